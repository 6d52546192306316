"""The component registry: one decorator binds a kind's name, parameters, ports, dimension rules, state and module.

A component is an ``nn.Module`` subclass::

    @component("linear", family="layer", params={"size": Param(Int(min=1), doc="output features"), **IN})
    class Linear(Component):
        @classmethod
        def infer(cls, p, ins, step):                  # static dimension rule, before any tensor exists
            return {"out": VType(p.size, ins["in"].time)}

        def __init__(self, p, ins, outs):
            super().__init__()
            self.proj = nn.Linear(ins["in"].size, p.size)

        def forward(self, x):                            # x: (B, [T,] in) -> (B, [T,] size)
            return self.proj(x)

Inputs are parameters of type :class:`RefList` (``in`` by convention); when several references are given
they arrive concatenated on the feature axis (``concat = True``) or as a list (``concat = False``).
A ``stateful`` component carries recurrent state inside a loop: it implements ``init_state`` and ``step``;
outside a loop it runs over the whole sequence with ``forward``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import nn

from ..spec.params import Choice, Either, Float, Param, RefList, RefType

FAMILIES = ("controller", "memory", "attention", "halting", "ops", "layer", "encoder", "scope")


@dataclass(frozen=True)
class VType:
    """The static type of a value: feature ``size``; ``time`` names the time axis (None: one vector per
    example); ``index`` marks integer class indices in ``[0, size)`` (tokens) instead of features.

    Tensor shapes: ``(B, size)`` or ``(B, T, size)``; index values ``(B,)`` or ``(B, T)``.

    ``layout = ("positions", A)`` marks a pointer's values (Vinyals et al. 2015): with ``index`` a position on
    the time axis ``A`` (a ``points_to:`` target, the token of a decoder writing one), without it scores over
    those positions (an attention's ``scores``); their size, the length of ``A``, is known only at run time
    (``size`` is 0).

    Otherwise ``layout`` marks a structured value kept flat in ``size`` features, e.g. ``("memory", N, M)`` for an
    N×M memory (``size = N·M``, viewed as ``(B, N, M)`` by the heads that read it) or ``("ntm_write", N, M)``
    for a write head's (weighting, erase, add). Only components that declare it in ``accepts`` take one. A
    value of a :attr:`Component.step_local` port (the write) is a tuple of tensors at run time, not a flat one.
    """

    size: int
    time: str | None = None
    index: bool = False
    layout: tuple | None = None

    def with_time(self, time: str | None) -> VType:
        return VType(self.size, time, self.index, self.layout)

    def __str__(self) -> str:
        if self.layout is not None and self.layout[0] == "positions":  # a pointer's choice, or its scores
            inner = f"position<{self.layout[1]}>" if self.index else f"scores<positions of {self.layout[1]}>"
        elif self.layout is not None:
            dims = "×".join(str(d) for d in self.layout[1:])
            inner = f"{self.layout[0]}[{dims}]" if dims else self.layout[0]
        else:
            inner = f"index<{self.size}>" if self.index else str(self.size)
        return f"seq[{self.time}]×{inner}" if self.time else inner


class ShapeError(Exception):
    """Raised by ``infer``: ``input`` names the offending input parameter, ``index`` the reference in it."""

    def __init__(self, message: str, input: str | None = None, index: int | None = None, hint: str = ""):
        super().__init__(message)
        self.message, self.input, self.index, self.hint = message, input, index, hint


INIT = Param(Either(Choice("zeros", "learned"), Float()), "zeros",
             "initial recurrent state of this node and initial value of prev(node): zeros, learned or a constant")
IN = {"in": Param(RefList(), doc="input node(s); several are concatenated on the feature axis")}


class Component(nn.Module):
    """Base class of every component. Subclasses are registered with :func:`component`."""

    kind: ClassVar[str] = ""
    family: ClassVar[str] = "layer"
    doc: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    inputs: ClassVar[tuple[str, ...]] = ()
    concat: ClassVar[bool] = True
    ports: ClassVar[tuple[str, ...]] = ("out",)
    stateful: ClassVar[bool] = False
    watch: ClassVar[tuple[str, ...]] = ()  # ports `attngraph inspect` records and draws (what it attended to)
    accepts: ClassVar[dict[str, str]] = {}  # input parameter -> the structured value (VType.layout kind) it takes
    state_is_output: ClassVar[bool] = False  # prev(node) starts from init_state()[0] (a memory's initial contents)
    step_local: ClassVar[tuple[str, ...]] = ()  # ports whose value is not one tensor (a write head's (w, e, a)):
    # read in the same step only, by a component that accepts it; never through prev() or out of a scope
    mask_for: ClassVar[str | None] = None  # an input parameter whose time axis's (B, T) bool validity mask the
    # module receives as keyword ``mask=`` in forward() and step() (None when every position is valid)

    @classmethod
    def infer(cls, p: SimpleNamespace, ins: dict[str, Any], step: bool) -> dict[str, VType]:
        """Output types, port by port (the first port is the node's default value).

        ``ins`` maps each input parameter to its VType (or a list of VTypes when ``concat`` is False);
        ``step`` is True inside a loop body. Raise :class:`ShapeError` for a mismatch.
        """
        raise NotImplementedError(f"component '{cls.kind}' must define infer()")

    @classmethod
    def static_type(cls, p: SimpleNamespace, port: str) -> VType | None:
        """A port's type from the parameters alone, for a prev() edge read before this node is inferred.

        The default: a ``size`` parameter gives the ``out`` port one vector per step. Override it when a
        component's size comes from elsewhere (e.g. a memory's width)."""
        size = getattr(p, "size", None)
        return VType(size) if port == "out" and isinstance(size, int) and not isinstance(size, bool) else None

    @classmethod
    def guess_type(cls, p: SimpleNamespace, inputs: dict[str, list], port: str, type_of: Callable) -> VType | None:
        """Like :meth:`static_type` when the parameters do not say: ``inputs`` are the node's input edges by
        parameter and ``type_of(edge)`` their types where known (or guessable). Default: unknown."""
        return None

    @classmethod
    def missing_port(cls, p: SimpleNamespace, port: str) -> tuple[str, str] | None:
        """Why a port that ``infer`` left out for these parameters is missing, and how to get it: (message,
        hint) for the error where it is read (None: a generic message)."""
        return None

    def init_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Initial recurrent state for ``batch`` examples (dtype and device of ``like``)."""
        raise NotImplementedError(f"component '{self.kind}' is stateful but has no init_state()")

    def step(self, state: tuple[torch.Tensor, ...], *inputs: Any):
        """One step inside a loop: returns ``(outputs, new_state)``."""
        raise NotImplementedError(f"component '{self.kind}' is stateful but has no step()")


REGISTRY: dict[str, type[Component]] = {}


def component(kind: str, family: str, params: dict[str, Param], doc: str = "", ports: tuple[str, ...] = ("out",),
              stateful: bool = False, concat: bool = True) -> Callable[[type[Component]], type[Component]]:
    """Register a component class under ``kind``. Every parameter of type RefList is an input."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family '{family}' for component '{kind}'; one of {FAMILIES}")

    def register(cls: type[Component]) -> type[Component]:
        if kind in REGISTRY and REGISTRY[kind] is not cls:
            raise ValueError(f"component kind '{kind}' is registered twice ({REGISTRY[kind].__module__} and "
                             f"{cls.__module__})")
        cls.kind, cls.family, cls.ports, cls.stateful, cls.concat = kind, family, ports, stateful, concat
        cls.params = dict(params)
        cls.params.setdefault("init", INIT)
        cls.inputs = tuple(k for k, v in params.items() if isinstance(v.type, (RefType, RefList)))
        cls.doc = doc or (cls.__doc__ or "").strip().split("\n")[0]
        REGISTRY[kind] = cls
        return cls

    return register

