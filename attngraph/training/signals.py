"""SIGINT and SIGTERM during training: the first asks the run to save and stop after the step in progress; a
second one, while the step may still be abandoned, interrupts it at once (KeyboardInterrupt); elsewhere it
waits like the first (an update half applied, or a checkpoint half written, would be lost)."""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it


class Interrupts:
    """``received``: the name of the first signal (None: none yet). Use::

        with interrupts.installed():
            ...
            with interrupts.abortable():   # a second signal raises KeyboardInterrupt in here
                draw, forward, backward
    """

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.received: str | None = None
        self._abortable = False

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signal.Signals(signum).name
            self.say(f"{self.received}: saving the last checkpoint after this step (send it again to save sooner)")
        elif self._abortable:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handler for SIGINT and SIGTERM inside the block (only the main thread can take signals)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handler) for signum in SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def abortable(self, allowed: bool = True) -> Iterator[None]:
        """A block that a second signal may interrupt (``allowed`` False: not even there)."""
        self._abortable = allowed
        try:
            yield
        finally:
            self._abortable = False
