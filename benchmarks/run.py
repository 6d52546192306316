"""Training-step benchmark: attngraph-compiled models against hand-written PyTorch of the same math.

Usage::

    python benchmarks/run.py              # full run (about 20 minutes on 2 CPU cores)
    python benchmarks/run.py --quick      # smoke run (under a minute)
    python benchmarks/run.py --threads 2  # torch.set_num_threads(2) (default 1)
    python benchmarks/run.py --clock cpu  # time this process's CPU time instead of wall time
    python benchmarks/run.py --only lstm-seq loop-gru2   # a subset of the models
    python benchmarks/run.py --compile    # the attngraph side with train.compile (torch.compile per loop body)
    python benchmarks/run.py --processes 5  # every model in 5 fresh processes: the median ratio and its range

For every model (a spec under ``benchmarks/specs/``, or a gallery spec) and batch size, the compiled model and
its hand-written twin (``benchmarks/hand.py``) start from identical weights and see identical inputs (their
outputs, losses and gradients are checked to agree first). One training step is forward + loss + backward + Adam
step. After a warm-up, the two alternate in one process (A, B, A, B, ...): each round times ``steps`` consecutive
training steps of each, and the reported time per step is the median over rounds. The last line is
``worst_ratio: X.XXX``, the largest compiled/hand-written ratio; before it, a second table gives the same
medians as training throughput in sequences per second. With ``--processes K`` every model runs in K fresh
processes and the ratio reported is the median of their K ratios, with the lowest and highest beside it: the
ratio measured in one process varies by several percent from one process to the next (where the allocator
places the tensors), more than the alternation within a process can remove. See benchmarks/README.md for the
method and its caveats.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import attngraph

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/hand.py, however this script is started
from hand import (  # noqa: E402
    ACTLSTM,
    NTM,
    Bahdanau,
    LoopFeedback,
    LoopGRU2,
    LoopLSTM,
    LSTMSeq,
    PointerNet,
    bce_loss,
    load_compiled_weights,
)

SPECS = Path(__file__).resolve().parent / "specs"
GALLERY = Path(__file__).resolve().parent.parent / "gallery"
N_IN, HIDDEN, N_OUT, T = 9, 128, 8, 40  # the synthetic models under specs/
COPY_LENGTH = 20  # ntm-copy: every sequence has the longest length of the gallery spec's task, T = 2*20 + 1
AGREE = 1e-4  # the largest |compiled - hand-written| difference of outputs and losses accepted before timing,
# and of gradients relative to the largest gradient


def random_bits(spec: attngraph.Spec, batch: int) -> dict[str, torch.Tensor]:
    """Random 0/1 inputs and targets, T steps, no masks (the synthetic models under specs/)."""
    gen = torch.Generator().manual_seed(1)
    return {"x": torch.randint(0, 2, (batch, T, N_IN), generator=gen).float(),
            "y": torch.randint(0, 2, (batch, T, N_OUT), generator=gen).float()}


def task_batch(spec: attngraph.Spec, batch: int) -> dict[str, torch.Tensor]:
    """A batch of the spec's own task (its ``task:`` section, as overridden by the case), all of one length:
    its input mask is all true, so the compiled model runs its unmasked forward, like the twin. The target
    mask counts in both models' losses (copy: the output phase)."""
    sample = spec.sections["task"].train.sample(batch, torch.Generator().manual_seed(1))
    if not sample["x.mask"].all():
        raise ValueError(f"{spec.name}: the benchmark needs equal-length sequences (no padding)")
    return sample


def seq2seq_batch(spec: attngraph.Spec, batch: int) -> dict[str, torch.Tensor]:
    """A batch of the spec's own sequence-to-sequence task as training draws it (``src``, ``src.mask``,
    ``tgt``, ``tgt.mask``): sources of different lengths, padded, so the compiled model runs its masked
    forward (packed encoder, attention masked at padding) and the twin packs and masks the same way."""
    return spec.sections["task"].train.sample(batch, torch.Generator().manual_seed(1))


def bits_forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["x"])


def bits_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """bce on ``y`` (masked by ``y.mask`` where the batch has one, as the compiled loss)."""
    mask = batch["y.mask"].float() if "y.mask" in batch else None
    return bce_loss(model(batch["x"]), batch["y"], mask)


def act_forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["x"])[0]


def act_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """bce on ``y`` + 0.001 · the mean ponder cost (as the spec's ``loss: ponder_cost, weight: 0.001``)."""
    return ACTLSTM.loss(*model(batch["x"]), batch["y"])


def seq2seq_forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["src"], batch["src.mask"], batch["tgt"])


def seq2seq_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on ``tgt``, averaged over the positions ``tgt.mask`` marks (as the compiled loss)."""
    return model.loss(seq2seq_forward(model, batch), batch["tgt"], batch["tgt.mask"])


def pointer_forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["x"], batch["y"])


def pointer_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy over the positions, averaged over the steps ``y.mask`` marks (as the compiled loss)."""
    return PointerNet.loss(pointer_forward(model, batch), batch["y"], batch["y.mask"])


@dataclass(frozen=True)
class Case:
    """One benchmark row: a spec, its hand-written twin (the class and its arguments), a batch size, how to
    make the batch from the loaded spec, and how the twin is called on it (its output, compared with the
    compiled model's output ``output``, and its loss)."""

    name: str
    spec: Path
    hand: type[nn.Module]
    batch: int
    hand_args: tuple = (N_IN, HIDDEN, N_OUT)
    data: Callable[[attngraph.Spec, int], dict[str, torch.Tensor]] = random_bits
    overrides: tuple[str, ...] = ()  # as `--set` on the command line
    output: str = "y"  # the compiled model's output (and target) the twin's output is compared with
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] = bits_forward
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] = bits_loss
    fill: tuple[tuple[str, float], ...] = ()  # compiled-model parameters set to a constant after the build
    lr: float = 1e-3  # Adam's learning rate (0: the same arithmetic, but the weights, and so the work, stay put)


def _ntm_copy(batch: int) -> Case:
    return Case("ntm-copy", GALLERY / "ntm-copy" / "spec.yaml", NTM, batch, hand_args=(9, 100, 8),
                data=task_batch, overrides=(f"task.length=[{COPY_LENGTH}, {COPY_LENGTH}]",))


def _bahdanau(batch: int) -> Case:
    return Case("attention-dates-bahdanau", GALLERY / "attention-dates-bahdanau" / "spec.yaml", Bahdanau, batch,
                hand_args=(59, 13), data=seq2seq_batch, output="tgt", forward=seq2seq_forward, loss=seq2seq_loss)


def _act_lstm(name: str, halt_bias: float | None = None) -> Case:
    """ACT around an LSTM cell; ``halt_bias`` overrides the halting unit's initial bias (the spec's 1.0 gives
    2 ponder steps per input step, -2.0 about 9). Adam runs with lr 0, so the number of ponder steps stays
    where the initial weights put it (trained on random bits, it wanders)."""
    fill = () if halt_bias is None else (("nodes.seq.ponder.h.proj.bias", halt_bias),)
    return Case(name, SPECS / "act_lstm.yaml", ACTLSTM, 32, forward=act_forward, loss=act_loss, fill=fill, lr=0.0)


CASES = [
    Case("lstm-seq", SPECS / "lstm_seq.yaml", LSTMSeq, 32),
    Case("loop-lstm", SPECS / "loop_lstm.yaml", LoopLSTM, 32),
    Case("loop-feedback", SPECS / "loop_feedback.yaml", LoopFeedback, 1),
    Case("loop-feedback", SPECS / "loop_feedback.yaml", LoopFeedback, 32),
    Case("loop-gru2", SPECS / "loop_gru2.yaml", LoopGRU2, 32),
    _ntm_copy(1),
    _ntm_copy(32),
    _bahdanau(32),
    _bahdanau(64),
    _act_lstm("act-lstm"),
    _act_lstm("act-lstm-bias-2", -2.0),
    Case("pointer-sort", SPECS / "pointer_sort.yaml", PointerNet, 128, hand_args=(), data=task_batch,
         forward=pointer_forward, loss=pointer_loss),
]


@dataclass(frozen=True)
class Settings:
    warmup: int  # training steps of each model before timing
    rounds: int  # alternating timed rounds
    steps: int  # training steps per model per round


QUICK = Settings(warmup=3, rounds=9, steps=4)
FULL = Settings(warmup=20, rounds=51, steps=15)


@dataclass
class Result:
    case: Case
    steps: int  # T of the batch (of its target: the decoder steps of a seq2seq model)
    compiled_ms: float
    hand_ms: float
    max_diff: float
    grad_diff: float  # the largest |compiled - hand-written| gradient difference / the largest |gradient|
    ratios: tuple[float, ...] = ()  # with --processes: each process's ratio

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else self.compiled_ms / self.hand_ms

    @property
    def spread(self) -> str:
        return f"{min(self.ratios):.3f}-{max(self.ratios):.3f}" if self.ratios else "-"

    def seqs_per_s(self, ms: float) -> float:
        return self.case.batch * 1e3 / ms


def make_models(case: Case, spec: attngraph.Spec) -> tuple[attngraph.CompiledModel, nn.Module]:
    """The compiled model (seeded) and the hand-written one loaded with the same weights."""
    torch.manual_seed(0)
    compiled = attngraph.build(spec)
    with torch.no_grad():  # a learned initial prediction (prev_init) starts at zero; make it non-trivial
        for param in compiled.parameters():
            if not param.any():
                param.uniform_(-0.5, 0.5)
        state = compiled.state_dict()
        for name, value in case.fill:
            state[name].fill_(value)
    hand = case.hand(*case.hand_args)
    load_compiled_weights(hand, compiled.state_dict())
    return compiled, hand


def gradient_diff(case: Case, compiled: attngraph.CompiledModel, hand: nn.Module,
                  batch: dict[str, torch.Tensor]) -> float:
    """The largest |difference| between the two models' gradients of their losses on ``batch``, over every
    parameter (each compiled parameter against the twin's it was copied to), divided by the largest |gradient|
    of the compiled model; the gradients are cleared after."""
    compiled.loss(compiled(batch), batch)[0].backward()
    case.loss(hand, batch).backward()
    mapping, diff, scale = type(hand).weight_map(), 0.0, 0.0
    for name, param in compiled.named_parameters():
        twin = hand.get_parameter(mapping[name])
        if (param.grad is None) != (twin.grad is None):
            raise SystemExit(f"{case.name}: {name} has a gradient in one model only")
        if param.grad is not None:
            diff = max(diff, (param.grad - twin.grad).abs().max().item())
            scale = max(scale, param.grad.abs().max().item())
    compiled.zero_grad(set_to_none=True)
    hand.zero_grad(set_to_none=True)
    return diff / scale if scale else diff


def compiled_step(model: attngraph.CompiledModel, batch: dict[str, torch.Tensor], lr: float = 1e-3
                  ) -> Callable[[dict[str, torch.Tensor] | None], None]:
    """One training step (Adam) of the compiled model on ``batch``, or on the batch it is given."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(data: dict[str, torch.Tensor] | None = None) -> None:
        data = batch if data is None else data
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(model(data), data)
        loss.backward()
        opt.step()

    return step


def hand_step(case: Case, model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One training step (Adam) of the twin: its forward + loss as the case defines them."""
    opt = torch.optim.Adam(model.parameters(), lr=case.lr)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = case.loss(model, batch)
        loss.backward()
        opt.step()

    return step


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(step: Callable[[], None], n: int, clock: Callable[[], float]) -> float:
    """Milliseconds per step over ``n`` consecutive steps."""
    start = clock()
    for _ in range(n):
        step()
    return (clock() - start) * 1e3 / n


def run_case(case: Case, settings: Settings, clock: Callable[[], float], compile_steps: bool = False) -> Result:
    spec = attngraph.load(case.spec, list(case.overrides))
    compiled, hand = make_models(case, spec)
    if compile_steps:  # train.compile: every loop body through torch.compile (compiled during the warm-up)
        compiled.compile_steps()
    batch = case.data(spec, case.batch)
    with torch.no_grad():
        outputs = compiled(batch)
        max_diff = (outputs[case.output] - case.forward(hand, batch)).abs().max().item()
        loss_diff = abs(compiled.loss(outputs, batch)[0].item() - case.loss(hand, batch).item())
    grad_diff = gradient_diff(case, compiled, hand, batch)
    if max_diff > AGREE or loss_diff > AGREE or grad_diff > AGREE:
        raise SystemExit(f"{case.name}: the compiled and hand-written models disagree (max |diff| {max_diff:.2e}, "
                         f"loss |diff| {loss_diff:.2e}, gradient |diff| {grad_diff:.2e})")
    steps = (compiled_step(compiled, batch, case.lr), hand_step(case, hand, batch))
    for _ in range(settings.warmup):
        for step in steps:
            step()
    times: tuple[list[float], list[float]] = ([], [])
    gc.collect()
    for _ in range(settings.rounds):
        for step, out in zip(steps, times):
            out.append(timed(step, settings.steps, clock))
    return Result(case, batch[case.output].shape[1], statistics.median(times[0]), statistics.median(times[1]), max_diff,
                  grad_diff)


def in_processes(index: int, argv: list[str], processes: int) -> Result:
    """CASES[index] measured in ``processes`` fresh interpreters (this script with ``--case``): the medians of
    their times, the median of their ratios and each process's ratio."""
    runs = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, __file__, *argv, "--case", str(index)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{CASES[index].name} (batch {CASES[index].batch}): the measuring process failed:\n"
                             f"{done.stderr.strip()}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return Result(CASES[index], runs[0]["steps"], statistics.median(r["compiled_ms"] for r in runs),
                  statistics.median(r["hand_ms"] for r in runs), max(r["max_diff"] for r in runs),
                  max(r["grad_diff"] for r in runs), tuple(r["compiled_ms"] / r["hand_ms"] for r in runs))


def print_table(results: list[Result]) -> None:
    w = max(15, *(len(r.case.name) for r in results))  # the model column
    print(f"{'model':<{w}} {'batch':>5} {'compiled ms/step':>17} {'hand ms/step':>13} {'ratio':>7} {'range':>12} "
          f"{'max |diff|':>11} {'grad diff':>10}")
    for r in results:
        print(f"{r.case.name:<{w}} {r.case.batch:>5} {r.compiled_ms:>17.3f} {r.hand_ms:>13.3f} {r.ratio:>7.3f} "
              f"{r.spread:>12} {r.max_diff:>11.1e} {r.grad_diff:>10.1e}")
    print()
    print(f"{'model':<{w}} {'batch':>5} {'T':>4} {'compiled seq/s':>15} {'hand seq/s':>11}")
    for r in results:
        print(f"{r.case.name:<{w}} {r.case.batch:>5} {r.steps:>4} {r.seqs_per_s(r.compiled_ms):>15.1f} "
              f"{r.seqs_per_s(r.hand_ms):>11.1f}")
    print(f"worst_ratio: {max(r.ratio for r in results):.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (a smoke test, under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a shared machine")
    parser.add_argument("--only", nargs="*", metavar="MODEL", help="run only these models (names as in the table)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the attngraph model's loop bodies with torch.compile (what train.compile does); "
                             "the hand-written twin stays eager, so the ratio shows what compiling gives")
    parser.add_argument("--processes", type=int, default=1, metavar="K",
                        help="measure every model in K fresh processes and report the median of their ratios with "
                             "the range (default 1: in this process)")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # one case, as JSON: what --processes runs
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, not {args.processes}")
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.case is not None:
        r = run_case(CASES[args.case], settings, CLOCKS[args.clock], args.compile)
        print(json.dumps({"steps": r.steps, "compiled_ms": r.compiled_ms, "hand_ms": r.hand_ms, "max_diff": r.max_diff,
                          "grad_diff": r.grad_diff}))
        return
    cases = [i for i, case in enumerate(CASES) if not args.only or case.name in args.only]
    if not cases:
        parser.error(f"no model named {' or '.join(args.only)}; the models: {', '.join(dict.fromkeys(c.name for c in CASES))}")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, "
          f"{settings.rounds} rounds x {settings.steps} steps after {settings.warmup} warm-up steps"
          f"{', attngraph model with compile_steps() (torch.compile)' if args.compile else ''}"
          f"{f', {args.processes} processes per model' if args.processes > 1 else ''}")
    if args.processes > 1:
        child = [f"--threads={args.threads}", f"--clock={args.clock}"] + ["--quick"] * args.quick + ["--compile"] * args.compile
        print_table([in_processes(i, child, args.processes) for i in cases])
    else:
        print_table([run_case(CASES[i], settings, CLOCKS[args.clock], args.compile) for i in cases])


if __name__ == "__main__":
    main()
