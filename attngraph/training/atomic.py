"""Crash-safe writes: a file or a whole folder replaced so that a kill, a full disk or an error at any
instant leaves either the old version or the new one, never a mix."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: temporary file in the same folder, flush, fsync, ``os.replace``, fsync of
    the folder. On any error (ENOSPC included) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    """Make the renames inside ``folder`` durable (best effort: some filesystems refuse a folder fsync)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def staging_copy(folder: Path) -> Path:
    """A fresh copy of ``folder`` beside it (``.NAME.new-XXXX``), to build a new version in; hidden, so a
    listing of the parent skips it."""
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    shutil.copytree(folder, staging, symlinks=True, dirs_exist_ok=True)
    return staging


def swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging`` (two renames, a moment apart: the old folder is kept as
    ``.NAME.old-XXXX`` until the new one is in place, and put back if that fails), then delete the old one."""
    staging, folder = Path(staging), Path(folder)
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    os.replace(folder, old)  # an empty folder is replaced by a rename onto it
    try:
        os.replace(staging, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    sync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
