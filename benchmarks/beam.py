"""Decoding throughput of a trained gallery seq2seq model: greedy and beam search, in sequences per second.

Usage::

    python benchmarks/beam.py              # attention-dates-bahdanau: 640 fresh dates, widths 1 2 5 10, batches 1 and 64
    python benchmarks/beam.py --quick      # smoke run (64 dates, 3 rounds)
    python benchmarks/beam.py --threads 2  # torch.set_num_threads(2) (default 1)
    python benchmarks/beam.py --clock cpu  # time this process's CPU time instead of wall time
    python benchmarks/beam.py --widths 1 5 --batches 64 --sequences 1280

Loads the gallery entry's spec and trained weights (``gallery/<entry>/checkpoint.safetensors``, whatever is
there now), draws ``--sequences`` fresh examples of its evaluation task (seed 12345) and decodes all of them
with every configuration, in batches of each size (the same examples for every batch size: each batch is cut
from the one sample and trimmed to its own longest source). Configurations: ``model.generate(inputs, beam=K)``
for every width K (K = 1 is greedy decoding through the beam-search code), and the free-running greedy forward,
``model.eval()(inputs)`` (no targets: it stops once every example has written eos), for comparison. Everything
runs under ``torch.no_grad``. After one warm-up pass over the examples, the configurations take turns
(round-robin), each timing one pass over all the examples per round; the table gives the median over rounds
as sequences per second, and the exact match of the decoded answers (the task's metric, over all examples).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import attngraph
from attngraph.gallery import gallery_root
from attngraph.training.checkpoint import load_weights

ENTRY = "attention-dates-bahdanau"
SEED = 12345
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    """One table row: the free-running forward (``width`` None) or generate() of a width, at a batch size."""

    width: int | None
    batch: int

    @property
    def label(self) -> str:
        if self.width is None:
            return "forward (greedy)"
        return "generate (greedy)" if self.width == 1 else "generate (beam)"


def chunks(data: Batch, size: int) -> list[Batch]:
    """``data`` cut into batches of ``size`` examples, each trimmed to its own longest sequences (a sequence
    ``x`` with a mask ``x.mask`` loses the columns that no example of the batch fills)."""
    out = []
    for start in range(0, next(iter(data.values())).shape[0], size):
        part = {k: v[start:start + size] for k, v in data.items()}
        for key in [k for k in part if f"{k}.mask" in part]:
            longest = int(part[f"{key}.mask"].sum(1).max())
            for name in (key, f"{key}.mask"):
                part[name] = part[name][:, :longest].contiguous()
        out.append(part)
    return out


def decoder(model: attngraph.CompiledModel, config: Config) -> Callable[[Batch], Batch]:
    """The outputs of one batch of inputs (no targets) under ``config``."""
    if config.width is None:
        return model  # in eval mode, under no_grad: the free-running greedy forward
    return lambda inputs: model.generate(inputs, beam=config.width)


def run_pass(decode: Callable[[Batch], Batch], batches: list[Batch]) -> list[Batch]:
    return [decode(inputs) for inputs in batches]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", default=ENTRY, help=f"a gallery entry with a decode scope (default {ENTRY})")
    parser.add_argument("--quick", action="store_true", help="64 examples, 3 rounds (a smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a shared machine")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 5, 10], metavar="K",
                        help="beam widths of generate() (default 1 2 5 10; 1 is greedy)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], metavar="B",
                        help="batch sizes (default 1 64)")
    parser.add_argument("--sequences", type=int, help="examples decoded per pass (default 640, 64 with --quick)")
    parser.add_argument("--rounds", type=int, help="timed passes per configuration (default 7, 3 with --quick)")
    args = parser.parse_args(argv)
    if min(args.widths) < 1 or min(args.batches) < 1:
        parser.error("beam widths and batch sizes must be at least 1")
    sequences = args.sequences or (64 if args.quick else 640)
    rounds = args.rounds or (3 if args.quick else 7)
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]

    folder = gallery_root() / args.entry
    spec = attngraph.load(folder / "spec.yaml")
    model = attngraph.build(spec)
    meta = load_weights(model, folder / "checkpoint.safetensors")
    model.eval()
    task = spec.sections["task"].eval
    metric = "exact_match" if "exact_match" in task.metric_names else "sequence_accuracy"
    data = task.sample(sequences, torch.Generator().manual_seed(SEED))
    target = next(iter(model.ir.outputs.values())).target
    inputs = {k: v for k, v in data.items() if k.split(".")[0] in model.ir.inputs}  # never the targets
    batches = {size: (chunks(inputs, size), chunks(data, size)) for size in args.batches}
    configs = [Config(width, size) for size in args.batches for width in (None, *args.widths)]

    print(f"{args.entry}: checkpoint of step {meta.get('step')} (its {metric} "
          f"{meta.get('metrics', {}).get(metric, float('nan')):.4g}); {sequences} fresh examples (seed {SEED})")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, median of {rounds} rounds "
          f"after one warm-up pass, torch.no_grad")
    scores: dict[Config, float] = {}
    times: dict[Config, list[float]] = {c: [] for c in configs}
    with torch.no_grad():
        for config in configs:  # warm-up pass (builds the beam-search forwards); its answers give the metric
            pairs = zip(run_pass(decoder(model, config), batches[config.batch][0]), batches[config.batch][1])
            scores[config] = sum(task.metrics({target: out[target]}, full)[metric] * len(full[target])
                                 for out, full in pairs) / sequences
        gc.collect()
        for _ in range(rounds):
            for config in configs:
                decode, chunked = decoder(model, config), batches[config.batch][0]
                start = clock()
                run_pass(decode, chunked)
                times[config].append(clock() - start)

    print(f"{'decoder':<18} {'width':>5} {'batch':>5} {'seq/s':>9} {'ms/batch':>9} {metric:>12}")
    for config in configs:
        seconds = statistics.median(times[config])
        per_batch = seconds * 1e3 / len(batches[config.batch][0])
        print(f"{config.label:<18} {config.width or 1:>5} {config.batch:>5} {sequences / seconds:>9.1f} "
              f"{per_batch:>9.2f} {scores[config]:>12.4f}")


if __name__ == "__main__":
    main()
