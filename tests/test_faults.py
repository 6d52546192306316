"""The fault suite of issue 27 (run side): kills and a full disk at every point of a checkpoint save, a read-only
folder, SIGTERM, a second signal, two processes on one run directory, hostile names and outputs, another spec on
resume, non-finite updates. Each case asserts that no data is lost and the exact message."""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from training_helpers import EchoBits, write_spec

import attngraph
import attngraph.training.atomic as atomic
from attngraph.training.checkpoint import load_checkpoint, model_tensors, read_meta
from attngraph.training.outdir import RunLock, default_run_dir, safe_name
from attngraph.training.trainer import Trainer, TrainingError
from attngraph_cli.main import main

TRAIN = "  batch: 4\n  steps: 8\n  lr: 0.05\n  checkpoint_every: 4\n  eval_every: 4\n  eval_batches: 1\n"
ROOT = Path(__file__).resolve().parents[1]


def trainer(tmp_path: Path, out: Path, train: str = TRAIN, task: str = "", **kw) -> Trainer:
    return Trainer(attngraph.load(write_spec(tmp_path, train, task)), out, quiet=True, **kw)


def params(out: Path) -> dict[str, torch.Tensor]:
    return model_tensors(load_checkpoint(out / "checkpoints" / "last.safetensors")[0])


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Recorder:
    """Stands in for ``os`` and ``tempfile`` inside attngraph.training.atomic: copies the run directory at every
    point of every atomic write (after the temporary file is made, half written, written, synced, given its mode,
    renamed), as a kill -9 at that instant would leave it."""

    def __init__(self, run: Path, into: Path):
        self.run, self.into, self.count, self.busy = run, into, 0, False

    def snap(self, point: str) -> None:
        if self.busy:
            return
        self.busy = True
        self.count += 1
        shutil.copytree(self.run, self.into / f"{self.count:03d}-{point}", symlinks=True)
        self.busy = False

    def __getattr__(self, name):
        return getattr(os, name)

    def mkstemp(self, **kw):
        fd, name = __import__("tempfile").mkstemp(**kw)
        self.snap("made")
        return fd, name

    def fdopen(self, fd, mode):
        real, recorder = os.fdopen(fd, mode), self

        class HalfThenRest:
            def __enter__(self):
                real.__enter__()
                return self

            def __exit__(self, *exc):
                return real.__exit__(*exc)

            def write(self, data):
                half = len(data) // 2
                real.write(data[:half])
                real.flush()
                recorder.snap("half-written")
                real.write(data[half:])

            def __getattr__(self, name):
                return getattr(real, name)

        return HalfThenRest()

    def fsync(self, fd):
        os.fsync(fd)
        self.snap("synced")

    def chmod(self, path, mode):
        os.chmod(path, mode)
        self.snap("mode-set")

    def replace(self, src, dst):
        os.replace(src, dst)
        self.snap("renamed")


def test_a_kill_at_any_point_of_any_save_loses_at_most_the_interval(tmp_path, monkeypatch):
    """Issue 27, finding 2: the run killed at each of ~30 instants inside its saves (last and best, at steps 4
    and 8) is resumed from what was on disk and ends with exactly the parameters of an uninterrupted run."""
    straight = tmp_path / "straight"
    trainer(tmp_path, straight).run()
    run, snaps = tmp_path / "run", tmp_path / "snaps"
    snaps.mkdir()
    recorder = Recorder(run, snaps)
    monkeypatch.setattr(atomic, "os", recorder)
    monkeypatch.setattr(atomic, "tempfile", recorder)
    trainer(tmp_path, run).run()
    monkeypatch.undo()
    points = sorted(snaps.iterdir())
    assert len(points) >= 24 and {p.name.split("-", 1)[1] for p in points} == {
        "made", "half-written", "synced", "mode-set", "renamed"}
    for point in points:
        last = point / "checkpoints" / "last.safetensors"
        if last.is_file():
            assert read_meta(last)["step"] in (4, 8), point.name  # the old checkpoint or the new one, whole
            trainer(tmp_path, point, resume=True).run()
        else:  # killed before the first checkpoint: nothing to resume, the run starts again
            with pytest.raises(TrainingError, match=r"^cannot resume: no checkpoint at "):
                trainer(tmp_path, point, resume=True).run()
            trainer(tmp_path, point, overwrite=True).run()
        assert same(params(point), params(straight)), point.name
        assert sorted(p.name for p in (point / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]


def test_a_full_disk_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer(tmp_path, run).run(until=4)
    last = run / "checkpoints" / "last.safetensors"
    before = load_checkpoint(last)
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def write(self, data):
            if data[:1] == b"{":  # run.json: there is room for that; not for a checkpoint
                return self.f.write(data)
            self.f.write(data[: len(data) // 3])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with pytest.raises(TrainingError) as err:
        trainer(tmp_path, run, resume=True).run()
    monkeypatch.undo()
    assert re.fullmatch(rf"cannot write checkpoint {run}/checkpoints/(best|last).safetensors: No space left on device; "
                        rf"the last checkpoint \({last}, step 4\) is intact: continue with --resume --out {run}", str(err.value))
    tensors, meta = load_checkpoint(last)
    assert meta["step"] == 4 and all(torch.equal(tensors[k], before[0][k]) for k in tensors)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]
    trainer(tmp_path, run, resume=True).run()  # space again: the run goes on from step 4
    assert read_meta(last)["step"] == 8


def test_a_read_only_run_directory_is_a_one_line_error(tmp_path, monkeypatch):
    run = tmp_path / "ro"
    real = os.open

    def read_only(path, flags, *args):
        if str(path).startswith(str(run)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    out = CliRunner().invoke(main, ["train", str(write_spec(tmp_path, TRAIN)), "--out", str(run), "--quiet"])
    assert out.exit_code == 1
    assert out.output == f"attngraph: cannot use {run} as the run directory: Read-only file system\n"


def test_a_second_ctrl_c_abandons_the_step_and_still_saves_a_resumable_state(tmp_path):
    """Issue 27, finding 3: two signals inside step 3 (while it draws its batch) save the state step 3 began from."""
    straight = tmp_path / "straight"
    trainer(tmp_path, straight).run()
    EchoBits.calls = 0
    result = trainer(tmp_path, tmp_path / "split", task=", interrupt_at: 3, interrupts: 2").run()
    last = tmp_path / "split" / "checkpoints" / "last.safetensors"
    assert (result.status, result.step, result.signal, result.exit_code) == ("interrupted", 2, "SIGINT", 130)
    assert result.message == (f"interrupted (SIGINT) at step 2; saved {last}; continue with: attngraph train SPEC "
                              f"--resume --out {tmp_path / 'split'}")
    assert read_meta(last)["step"] == 2
    trainer(tmp_path, tmp_path / "split", resume=True, allow_spec_change=True).run()
    assert same(params(tmp_path / "split"), params(straight))


def test_sigterm_saves_and_exits_143(tmp_path):
    """kill, systemd, Slurm and Kubernetes send SIGTERM first: the run saves after the step and exits."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "attngraph", "train", str(spec), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    log = out / "train_loss.csv"
    deadline = time.monotonic() + 120
    while (not log.is_file() or len(log.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    last = out / "checkpoints" / "last.safetensors"
    step = read_meta(last)["step"]
    assert proc.returncode == 143, stderr
    assert 1 <= step < 100000
    assert stderr.splitlines()[-1] == (f"interrupted (SIGTERM) at step {step}; saved {last}; continue with: "
                                       f"attngraph train SPEC --resume --out {out}")


TINY = """\
attngraph: 1
name: tiny
inputs: {x: {size: 5}}
targets: {y: {size: 4}}
model:
  ctrl: {kind: lstm, size: 16, in: x}
  head: {kind: linear, size: 4, in: ctrl}
outputs: {y: {from: head, loss: bce}}
task: {kind: copy, width: 4, length: [1, 5]}
train: {batch: 4, steps: 100000, eval_every: 100000, checkpoint_every: 100000, log_every: 1}
"""


def test_two_processes_on_one_run_directory(tmp_path):
    """Issue 27, finding 4: while one process holds the run directory, another gets one line and exit 1."""
    run = tmp_path / "run"
    lock = RunLock(run)  # flock conflicts between two opens of the file, in one process as in two
    try:
        out = CliRunner().invoke(main, ["train", str(write_spec(tmp_path, TRAIN)), "--out", str(run), "--quiet"])
    finally:
        lock.release()
    assert out.exit_code == 1
    assert out.output == (f"attngraph: {run} is in use by another training (pid {os.getpid()}): wait for it to "
                          "finish or choose another --out\n")
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written by the refused process
    trainer(tmp_path, run).run()  # the lock is free again once its holder ends


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path):
    run = tmp_path / "run"
    trainer(tmp_path, run).run()
    before = params(run)
    spec = str(write_spec(tmp_path, TRAIN))
    out = CliRunner().invoke(main, ["train", spec, "--out", str(run), "--quiet", "--seed", "3"])
    assert out.exit_code == 1
    assert out.output == (f"attngraph: {run} already holds a run: continue it with --resume, replace it with "
                          "--overwrite, or choose another --out\n")
    assert same(params(run), before)
    again = CliRunner().invoke(main, ["train", spec, "--out", str(run), "--quiet", "--seed", "3", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert not same(params(run), before) and read_meta(run / "checkpoints" / "last.safetensors")["seed"] == 3


@pytest.mark.parametrize("where, message", [
    ("/", "refusing to train into /: it is the filesystem root (give --out a folder of its own, e.g. runs/try1)"),
    (".", "refusing to train into .: it is the working folder or a folder above it (give --out a folder of its own, "
          "e.g. runs/try1)"),
    ("..", "refusing to train into ..: it is the working folder or a folder above it (give --out a folder of its own, "
           "e.g. runs/try1)"),
    ("data", "data is not empty and is not an attngraph run directory (it holds notes.txt): choose another --out"),
    ("repo", "repo is not empty and is not an attngraph run directory (it holds .git): choose another --out"),
])
def test_dangerous_outputs_are_refused_before_anything_is_written(tmp_path, monkeypatch, where, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "repo" / ".git").mkdir(parents=True)  # a hidden folder is not a run's either
    (tmp_path / "repo" / "metrics.csv").write_text("mine")
    spec = str(write_spec(tmp_path, TRAIN))
    listing = sorted(p.name for p in tmp_path.iterdir())
    out = CliRunner().invoke(main, ["train", spec, "--out", where, "--quiet", "--overwrite"])
    assert (out.exit_code, out.output) == (1, f"attngraph: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine" and not (tmp_path / "data" / ".lock").exists()
    assert (tmp_path / "repo" / "metrics.csv").read_text() == "mine" and (tmp_path / "repo" / ".git").is_dir()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(TrainingError, match=f"^--out {tmp_path / 'file.txt'} is a file, not a folder$"):
        trainer(tmp_path, tmp_path / "file.txt")
    assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.parametrize("name, folder", [("../../x", "x"), ("/etc/passwd", "etc-passwd"), ("a b/../c", "a-b-..-c"),
                                          ("..", "run"), (".hidden", "hidden"), ("~root", "root")])
def test_hostile_spec_names_stay_under_the_runs_folder(tmp_path, monkeypatch, name, folder):
    """Issue 27, finding 8: the spec's name decides only the last component of runs/<name>-<time>."""
    assert safe_name(name) == folder
    monkeypatch.chdir(tmp_path)
    run = default_run_dir(name, when=0)
    assert run.parent == Path("runs") and run.name.startswith(f"{folder}-")


def test_a_hostile_spec_name_trains_inside_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = write_spec(tmp_path, TRAIN).read_text().replace("name: echo", 'name: "../../escaped"')
    spec = tmp_path / "hostile.yaml"
    spec.write_text(text)
    result = Trainer(attngraph.load(spec), None, quiet=True).run()
    assert result.out.parent == Path("runs") and result.out.name.startswith("escaped-")
    assert not (tmp_path.parent.parent / "escaped").exists()


def test_resume_refuses_another_spec_unless_allowed(tmp_path):
    """Issue 27, finding 5: by hash, naming what differs; train.steps may change (a run continued longer)."""
    run = tmp_path / "run"
    trainer(tmp_path, run).run(until=4)
    last = run / "checkpoints" / "last.safetensors"
    with pytest.raises(TrainingError) as err:
        trainer(tmp_path, run, TRAIN.replace("lr: 0.05", "lr: 0.5"), resume=True).run()
    message = str(err.value)
    assert message.startswith(f"cannot resume: {last} was trained from another spec (differing: train.lr): config hash ")
    assert message.endswith("; continue it anyway with --allow-spec-change, or start a new run without --resume")
    assert read_meta(last)["step"] == 4
    longer = trainer(tmp_path, run, TRAIN.replace("steps: 8", "steps: 12"), resume=True).run()
    assert longer.status == "done" and longer.step == 12


def test_a_bare_resume_takes_the_newest_run_of_exactly_this_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TRAIN)
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("name: echo", "name: echo-old-experiment"))
    changed = tmp_path / "changed.yaml"
    changed.write_text(spec.read_text().replace("lr: 0.05", "lr: 0.5"))
    for path, out in ((spec, "runs/echo-20200101-000000"), (other, "runs/echo-old-experiment-20300101-000000"),
                      (changed, "runs/echo-20250101-000000")):
        Trainer(attngraph.load(path), Path(out), quiet=True).run(until=2)
    out = CliRunner().invoke(main, ["train", str(spec), "--resume", "--quiet"])
    assert out.exit_code == 0, out.output
    assert "checkpoints in runs/echo-20200101-000000/checkpoints" in out.output
    assert read_meta(Path("runs/echo-old-experiment-20300101-000000/checkpoints/last.safetensors"))["step"] == 2
    assert read_meta(Path("runs/echo-20250101-000000/checkpoints/last.safetensors"))["step"] == 2


def test_an_update_that_makes_the_parameters_non_finite_is_never_saved(tmp_path, monkeypatch):
    """Issue 27, finding 7: an update that leaves a parameter infinite (as a huge rate does to finite gradients)
    stops the run under either policy; nothing is saved, and the message promises no checkpoint that is not there."""
    real = torch.optim.SGD.step

    def overflowing(self, *args, **kwargs):
        real(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("inf")

    monkeypatch.setattr(torch.optim.SGD, "step", overflowing)
    run = tmp_path / "huge"
    for nan in ("stop", "skip"):
        result = trainer(tmp_path, run, TRAIN + f"  optimizer: sgd\n  nan: {nan}\n", overwrite=True).run()
        assert (result.status, result.step, result.exit_code) == ("nan", 1, 1)
        assert result.message == ("the parameters are not finite after the update at step 1: stopped (nothing "
                                  f"non-finite was saved; no checkpoint to resume from in {run / 'checkpoints'}; lower "
                                  "train.lr, set train.clip_norm, or use train.nan=skip)")
        assert list((run / "checkpoints").iterdir()) == []


def test_an_adam_update_that_overflows_stops_the_run(tmp_path):
    result = trainer(tmp_path, tmp_path / "run", TRAIN.replace("lr: 0.05", "lr: 1.0e38")).run()
    assert (result.status, result.step, result.exit_code) == ("nan", 1, 1)
    assert result.message.startswith("the update overflowed (value cannot be converted to type float without overflow) "
                                     "at step 1: stopped (nothing non-finite was saved; no checkpoint to resume from")


def test_a_non_finite_gradient_is_skipped_like_a_non_finite_loss(tmp_path, monkeypatch):
    real = torch.Tensor.backward
    calls = []

    def poisoned(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # step 2's gradients: one infinite element
            next(p for p in trained.model.parameters()).grad.view(-1)[0] = float("inf")

    monkeypatch.setattr(torch.Tensor, "backward", poisoned)
    trained = trainer(tmp_path, tmp_path / "run", TRAIN + "  nan: skip\n  clip_norm: 1\n")
    result = trained.run()
    assert result.status == "done" and result.skipped == 1
    assert all(torch.isfinite(t).all() for t in params(tmp_path / "run").values())


def test_progress_is_printed_on_a_pipe_without_evaluations(tmp_path, capsys):
    """Issue 27, finding 13: eval_every past the end, stderr not a terminal: progress lines all the same."""
    spec = attngraph.load(write_spec(tmp_path, TRAIN.replace("eval_every: 4", "eval_every: 1000")))
    Trainer(spec, tmp_path / "run", progress_every=0).run()
    lines = [line for line in capsys.readouterr().err.splitlines() if re.match(r"step \d+/8 ", line)]
    assert [line.split(",")[0] for line in lines] == [f"step {k}/8 ({100 * k // 8}%)" for k in range(1, 9)]
    assert all(" seq/s, loss " in line and line.endswith(" left") for line in lines)


@pytest.mark.parametrize("columns, bar", [(0, False), (80, True)])
def test_a_bar_only_on_a_terminal_that_reports_a_width(columns, bar):
    """tqdm draws nothing on a terminal of width 0: there the progress lines are used instead."""
    import fcntl
    import pty
    import struct
    import termios

    from attngraph.training.progress import has_width

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with os.fdopen(child_fd, "w") as terminal:
        assert has_width(terminal) is bar
    os.close(main_fd)


def test_a_learning_curve_of_one_evaluation_shows_its_point():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attngraph.training.rundir import _series

    fig, ax = plt.subplots()
    _series(ax, [{"sequences": 40.0, "eval_loss": 0.5}], "eval_loss", "eval")
    assert ax.lines[0].get_marker() == "o"
    plt.close(fig)


def test_the_run_record_says_how_the_run_was_made(tmp_path, monkeypatch):
    import json

    import yaml

    spec, run = write_spec(tmp_path, TRAIN), tmp_path / "run"
    args = ["train", str(spec), "--out", str(run), "--quiet", "--seed", "7"]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/attngraph", *args])  # as the shell would have started it
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    session = json.loads((run / "run.json").read_text())["sessions"][0]
    assert session["command"] == f"attngraph train {spec} --out {run} --quiet --seed 7"
    assert (session["seed"], session["threads"], session["resumed_at"]) == (7, 1, None)
    assert isinstance(session["git_dirty"], bool) or session["git_dirty"] is None
    record = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    assert {k: record["train"][k] for k in ("seed", "schedule", "eval_batch", "nan", "betas", "log_every")} == {
        "seed": 0, "schedule": {"kind": "constant"}, "eval_batch": 4, "nan": "stop", "betas": [0.9, 0.999],
        "log_every": 10}
    assert record["task"] == {"kind": "echo_bits", "length": 4, "nan_after": 0, "fail_at": 0, "interrupt_at": 0,
                              "interrupts": 1, "noise": 0.0}
    evaluated = CliRunner().invoke(main, ["eval", str(run), "--json", "--batches", "1"])  # a run directory as SPEC
    assert evaluated.exit_code == 0, evaluated.output
    assert set(json.loads(evaluated.stdout)) == {"loss", "bit_errors"}


SHIPPED = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("gallery/*/spec.yaml"), *ROOT.glob("specs/examples/*.yaml")]
                 if "\ntask:" in p.read_text())  # the specs that train


@pytest.mark.parametrize("path", SHIPPED)
def test_a_run_record_spec_checks_and_trains_the_same(path, tmp_path):
    """spec.resolved.yaml, with every default written out, reads back as the same train: and task: settings
    (``eval`` and ``inspect`` of a run directory read it)."""
    import dataclasses

    import yaml

    from attngraph.training.rundir import run_record_spec

    spec = attngraph.load(ROOT / path)
    record = tmp_path / "spec.resolved.yaml"
    record.write_text(yaml.safe_dump(run_record_spec(spec), sort_keys=False, default_flow_style=None, width=100))
    again, report = attngraph.check(record, [])
    assert again is not None, [str(d) for d in report]
    cfg = spec.sections["train"]
    want = dataclasses.replace(cfg, eval_batch=cfg.eval_batch or cfg.batch,
                               betas=cfg.betas or ((0.9, 0.999) if cfg.optimizer in ("adam", "adamw") else None))
    assert again.sections["train"] == want
    ours, theirs = vars(spec.sections["task"].train.p), vars(again.sections["task"].train.p)
    assert {k: v for k, v in ours.items() if k != "path"} == {k: v for k, v in theirs.items() if k != "path"}
