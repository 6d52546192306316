"""Training speed with one and with two torch threads, on an idle machine and with another busy process on the
cores: the measurement behind ``attngraph train``'s default thread count.

Usage::

    python benchmarks/threads.py                       # lstm-copy, ntm-copy, attention-dates-bahdanau, act-parity-8
    python benchmarks/threads.py --steps 20 --rounds 3 --entries ntm-copy lstm-copy
    python benchmarks/threads.py --busy 1              # with 1 busy-looping process beside it (a loaded machine)

For every gallery entry and thread count, trains the entry's spec from scratch for ``--steps`` steps in a fresh
process (``python -m attngraph train NAME --threads T --quiet``, eval and checkpoints pushed past the end) and
times the steps as the trainer's own clock measures them (``seconds`` in the last checkpoint: start-up and
imports excluded). The thread counts take turns for ``--rounds`` rounds; the table gives the median seconds per
step of each and the ratio two threads / one thread (above 1: two threads are slower). ``--busy N`` starts N
processes spinning in a Python loop for the whole measurement, as other work on a shared machine would.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from attngraph.training.checkpoint import read_meta

ENTRIES = ("lstm-copy", "ntm-copy", "attention-dates-bahdanau", "act-parity-8")


def seconds_per_step(entry: str, threads: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-m", "attngraph", "train", entry, "--out", str(out), "--quiet",
                        "--threads", str(threads), "--set", f"train.steps={steps}", "--set", "train.eval_every=100000",
                        "--set", "train.checkpoint_every=100000", "--set", "train.eval_batches=1"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        return read_meta(out / "checkpoints" / "last.safetensors")["seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", nargs="+", default=list(ENTRIES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the measurement")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        print(f"{'entry':<28} {'1 thread s/step':>16} {'2 threads s/step':>17} {'2/1':>6}   (busy: {args.busy}, "
              f"{os.cpu_count()} cores)")
        for entry in args.entries:
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for threads in (1, 2):
                    times[threads].append(seconds_per_step(entry, threads, args.steps))
            one, two = statistics.median(times[1]), statistics.median(times[2])
            print(f"{entry:<28} {one:>16.4f} {two:>17.4f} {two / one:>6.2f}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


if __name__ == "__main__":
    main()
