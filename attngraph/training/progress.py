"""Progress that is always visible: a tqdm bar on a terminal that reports a width; elsewhere (a pipe, a log
file, a terminal without a width) one line every ``every`` seconds::

    step 120/300 (40%), 52.3 seq/s, loss 0.2391, 0:07 elapsed, 0:10 left
"""
from __future__ import annotations

import math
import os
import sys
import time


def has_width(stream) -> bool:
    """True for a terminal that reports a usable width (tqdm draws nothing on one that does not)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 10
    except (OSError, ValueError, AttributeError):  # no file descriptor (a StringIO), or not a terminal after all
        return False


def clock(seconds: float) -> str:
    """``75.4`` -> ``1:15``; ``3700`` -> ``1:01:40``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Reports training progress on stderr: ``update(step, loss, rate)`` after every step; ``write`` prints a
    message without breaking the bar. Quiet: nothing at all."""

    def __init__(self, total: int, initial: int, *, quiet: bool, every: float = 10.0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.every, self.quiet = total, every, quiet
        self.bar = None
        if not quiet and has_width(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream)
        self.t0 = self.last = time.monotonic()
        self.start = initial

    def update(self, step: int, loss: float, rate: float, postfix: dict[str, str]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({"loss": f"{loss:.4g}", **postfix, "seq/s": f"{rate:.0f}"}, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if self.quiet or (now - self.last < self.every and step < self.total):
            return
        self.last = now
        elapsed = now - self.t0
        left = elapsed / max(step - self.start, 1) * (self.total - step)
        self.write(f"step {step}/{self.total} ({100 * step // self.total}%), {rate:.1f} seq/s, loss {loss:.4g}, "
                   f"{clock(elapsed)} elapsed, {clock(left)} left")

    def write(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
