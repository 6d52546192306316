"""Every gallery entry's outputs on a fixed batch: what ``test_gallery_golden.py`` freezes bit for bit.

Run as a script to write the golden files from the current code (only when a change of outputs is
intended, and say so in the commit)::

    OMP_NUM_THREADS=1 python tests/gallery_golden.py        # writes tests/golden/gallery/NAME.safetensors
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

import attngraph
from attngraph.gallery import entry_names
from attngraph.training.checkpoint import load_weights
from attngraph.training.evaluate import seeded_sampling

GALLERY = Path(__file__).resolve().parents[1] / "gallery"
GOLDEN = Path(__file__).resolve().parent / "golden" / "gallery"
BATCH, SEED = 3, 1234


def names() -> list[str]:
    return entry_names(GALLERY)


@torch.no_grad()
def outputs(name: str) -> dict[str, torch.Tensor]:
    """The entry's checkpoint run in eval mode on BATCH examples of its evaluation task (seed SEED): every
    output of ``forward`` (``out.NAME``), the masked forward on a padded batch where the task pads, and, for
    a model with a decoder, ``generate`` with beam width 2 (``beam.NAME``)."""
    spec = attngraph.load(GALLERY / name / "spec.yaml")
    model = attngraph.build(spec)
    load_weights(model, GALLERY / name / "checkpoint.safetensors")
    model.eval()
    data = spec.sections["task"].eval.sample(BATCH, torch.Generator().manual_seed(SEED))
    got = {f"in.{k}": v for k, v in data.items()}
    with seeded_sampling(SEED):
        got.update({f"out.{k}": v for k, v in model(data).items()})
        if any(n.kind == "decode" for n in model.ir.nodes()):
            got.update({f"beam.{k}": v for k, v in model.generate(data, beam=2).items()})
    return {k: v.detach().contiguous() for k, v in got.items() if isinstance(v, torch.Tensor)}


def main() -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or names():
        save_file(outputs(name), str(GOLDEN / f"{name}.safetensors"))
        print(name)


if __name__ == "__main__":
    main()
