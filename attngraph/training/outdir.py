"""Where a run writes, and who may write there: names kept under the runs folder, dangerous or foreign
folders refused, an existing run overwritten only on request, and one process per run directory.

    out = run_dir_for(spec, out)             # runs/<safe name>-<time> when out is None
    lock = RunLock(out)                      # raises RunDirError if another process trains there
    prepare(out, resume=False, overwrite=False)
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import time
from pathlib import Path

RUN_FILES = ("checkpoints", "tensorboard", "metrics.csv", "train_loss.csv", "learning_curve.png", "spec.resolved.yaml",
             "overrides.txt", "versions.json", "init.json", "run.json")
LOCK = ".lock"
STAMP = re.compile(r"-\d{8}-\d{6}$")


class RunDirError(Exception):
    """A run directory that must not be used: dangerous, foreign, in use, or holding a run not asked for."""


def safe_name(name: str) -> str:
    """A spec name as one harmless path component: every character outside ``A-Za-z0-9._-`` becomes ``-``,
    leading dots and dashes go (``../../x`` -> ``x``, ``/etc`` -> ``etc``); ``run`` if nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-")
    return cleaned[:100] or "run"


def default_run_dir(name: str, root: Path = Path("runs"), when: float | None = None) -> Path:
    """``runs/<safe name>-<YYYYmmdd-HHMMSS>`` (local time ``when``, default now), always inside ``root``."""
    return Path(root) / f"{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def dangerous(out: Path) -> str | None:
    """Why ``out`` must never be a run directory (the filesystem root, the home folder, the working folder or
    one above it), or None."""
    where = Path(out).expanduser().resolve()
    if where == Path(where.anchor):
        return "it is the filesystem root"
    if where == Path.home().resolve():
        return "it is your home folder"
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        return "it is the working folder or a folder above it"
    return None


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is dangerous or not a folder (before anything is created)."""
    why = dangerous(out)
    if why is not None:
        raise RunDirError(f"refusing to train into {out}: {why} (give --out a folder of its own, e.g. runs/try1)")
    if Path(out).exists() and not Path(out).is_dir():
        raise RunDirError(f"--out {out} is a file, not a folder")


def prepare(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check that a fresh run may start in ``out`` (created, empty but for its lock), or empty it when
    ``overwrite`` and it holds only an earlier attngraph run. With ``resume`` nothing is checked here."""
    if resume:
        return
    others = sorted(p.name for p in Path(out).iterdir() if p.name != LOCK)
    if not others:
        return
    foreign = [n for n in others if n not in RUN_FILES and not (n.startswith(".") and n.endswith(".tmp"))]
    if foreign:
        raise RunDirError(f"{out} is not empty and is not an attngraph run directory (it holds {', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}): choose another --out")
    if not overwrite:
        raise RunDirError(f"{out} already holds a run: continue it with --resume, replace it with --overwrite, "
                          "or choose another --out")
    for name in others:
        path = Path(out) / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


class RunLock:
    """An exclusive ``flock`` on ``out/.lock`` for the life of a run (released by :meth:`release` or when the
    process ends, however it ends). A second process gets :class:`RunDirError` naming the holder's pid."""

    def __init__(self, out: Path):
        import fcntl

        self.folder_created = not Path(out).exists()
        Path(out).mkdir(parents=True, exist_ok=True)
        self.path = Path(out) / LOCK
        self.created = not self.path.exists()  # then release(undo=True) takes it away again
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(f"{out} is in use by another training (pid {holder}): wait for it to finish "
                                  "or choose another --out") from None
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, undo: bool = False) -> None:
        """Drop the lock; ``undo``: also delete the lock file, and the folder, if this lock made them (a refused
        folder is left as it was found)."""
        if self.fd >= 0:
            if undo and self.created:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1
            if undo and self.folder_created and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()
