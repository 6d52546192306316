"""Training throughput of a gallery spec on its own task (lengths as in training), eager and with train.compile.

Usage::

    python benchmarks/throughput.py ntm-copy --batch 1 --steps 300
    python benchmarks/throughput.py ntm-copy --batch 32 --steps 30

Draws ``steps`` batches of the spec's training task (so sequence lengths vary as in training, and batches
of more than one are padded and masked as in training), then times forward + loss + backward + Adam step
over them for the compiled spec as is and with ``compile_steps()`` (torch.compile per loop body, what
``train.compile: true`` does), on the same batches, after one warm-up pass that includes the compilation.
Prints sequences per second (process CPU time with one thread by default, steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import attngraph
from attngraph.gallery import gallery_root

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/run.py, however this is started
from run import compiled_step  # noqa: E402


def measure(model: attngraph.CompiledModel, batches: list[dict[str, torch.Tensor]], clock) -> float:
    """Sequences per second over ``batches`` (one training step each)."""
    step = compiled_step(model, batches[0])
    for batch in batches[:3]:  # warm-up (compilation happens here)
        step(batch)
    start = clock()
    for batch in batches:
        step(batch)
    elapsed = clock() - start
    return len(batches) * len(next(iter(batches[0].values()))) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("entry", help="a gallery entry's name (its spec.yaml is used)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (batches)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    spec = attngraph.load(gallery_root() / args.entry / "spec.yaml")
    task = spec.sections["task"].train
    gen = torch.Generator().manual_seed(0)
    batches = [task.sample(args.batch, gen) for _ in range(args.steps)]
    mean_t = sum(b[f"{next(iter(spec.ir.inputs))}.mask"].shape[1] for b in batches) / len(batches)
    print(f"{args.entry}: batch {args.batch}, {args.steps} batches of its task (mean T {mean_t:.1f}), "
          f"{args.threads} thread(s), {args.clock} clock")
    for compiled in (False, True):
        torch.manual_seed(0)
        model = attngraph.build(spec)
        if compiled:
            model.compile_steps()
        print(f"  {'train.compile' if compiled else 'eager':<14} {measure(model, batches, clock):8.1f} sequences/s")


if __name__ == "__main__":
    main()
