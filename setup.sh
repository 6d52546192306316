#!/usr/bin/env bash
# Installs attngraph for use and development, on a fresh machine or one that already has PyTorch.
#   1. PyTorch's CPU build first, unless some torch is already installed (a CUDA build is kept as it is).
#      A bare `pip install torch` on Linux would pull several GB of CUDA packages, so we ask for the CPU
#      build explicitly: a local wheel if pip is configured with one, otherwise PyTorch's CPU index.
#   2. Graphviz's `dot` (Debian/Ubuntu, when we may use apt-get); without it `attngraph render` still
#      writes the .dot source and says how to install it.
#   3. attngraph itself, editable, with its test tools.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "setup: keeping the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
elif "$PYTHON" -m pip install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
  # a local wheel (pip's find-links): now its dependencies, which are small, from the package index
  "$PYTHON" -m pip install -q "torch==$TORCH_VERSION"
  echo "setup: installed torch $TORCH_VERSION from a local wheel"
else
  "$PYTHON" -m pip install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
      || echo "setup: could not install graphviz; 'attngraph render' will write .dot files only"
  else
    echo "setup: Graphviz's dot is missing; install it with 'apt-get install graphviz' or 'brew install graphviz'"
  fi
fi

"$PYTHON" -m pip install -q -e ".[test]"
echo "setup: done ($("$PYTHON" -c 'import attngraph, torch; print("attngraph", attngraph.__version__, "· torch", torch.__version__)'))"
