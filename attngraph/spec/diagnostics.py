"""Located diagnostics: every problem in a spec is reported as ``FILE:LINE:COL: key.path: message (hint)``."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pos:
    """A place in a source: a file (or ``--set[i]`` for a command-line override), 1-based line and column."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True)
class Diagnostic:
    pos: Pos
    path: str
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        """One line, whatever the spec holds: a key path with spaces is quoted, control characters escaped."""
        where = f"{self.pos}: " + ("warning: " if self.severity == "warning" else "")
        path = repr(self.path) if any(c.isspace() for c in self.path) else self.path
        path = f"{path}: " if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return _printable(f"{where}{path}{self.message}{hint}")

    def sort_key(self) -> tuple:
        return (self.pos.file, self.pos.line, self.pos.col, self.path, self.message)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass
class Diagnostics:
    """Collects every error and warning of a check, so that all of them are reported at once."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, pos: Pos, path: str, message: str, hint: str = "") -> None:
        self.items.append(Diagnostic(pos, path, message, hint))

    def warning(self, pos: Pos, path: str, message: str, hint: str = "") -> None:
        self.items.append(Diagnostic(pos, path, message, hint, "warning"))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        """Sorted by place, each problem once: a value reused through a YAML alias or a block included twice
        is reported at its one place in the source, not once per key path that reaches it."""
        seen: set[tuple] = set()
        out = []
        for d in sorted(self.items, key=Diagnostic.sort_key):
            key = (d.pos, d.message, d.hint, d.severity) if d.pos.line else (str(d),)
            if key not in seen:
                seen.add(key)
                out.append(d)
        return out

    def __bool__(self) -> bool:
        return bool(self.errors)


class SpecError(Exception):
    """Raised by :func:`attngraph.load` / :func:`attngraph.build` when a spec has errors.

    ``str(err)`` is the full report, one located diagnostic per line.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A hint naming the closest option(s) to ``word``, or listing the options when none is close."""
    options = sorted(set(options))
    close = difflib.get_close_matches(word, options, n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if not options:
        return ""
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"expected one of: {shown}"
