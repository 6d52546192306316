"""Halting scopes: repeat a body a learned, data-dependent number of *ponder steps* within one step.

``act`` — Adaptive Computation Time (Graves 2016, §2). At ponder step n the body runs on the state it left at
step n − 1 and its ``halt:`` node (a ``halting_unit``) gives hⁿ ∈ (0, 1). The scope stops at

    N = min{n : h¹ + … + hⁿ ≥ 1 − ε}   (at most ``max_steps``),   R = 1 − (h¹ + … + h^{N−1}),

and weighs step n by pⁿ = hⁿ (n < N), p^N = R. What leaves the scope is the p-weighted mean over the ponder
steps: every body value read from outside, and every state the body carries on (recurrent states, memories,
head weightings, prev() values), so the next step starts from the mean state, as in the paper's eq. (10)-(11).
``<scope>.cost`` is the ponder cost ρ = N + R of eq. (12) (N has no gradient, R does), for an output with
``loss: ponder_cost`` and ``weight:`` τ; ``<scope>.steps`` is N; ``<scope>.first`` (read inside the body) is 1 at
the first ponder step and 0 after: the paper's flag appended to the input.

Example (Graves 2016's parity network: a tanh RNN of 128 on the flagged input)::

    ponder:
      kind: act
      halt: h
      max_steps: 100
      body:
        rnn: {kind: rnn, size: 128, in: [x, ponder.first]}
        h:   {kind: halting_unit, in: rnn, bias: 1.0}
        y:   {kind: linear, size: 1, in: rnn}
      output: y

Batches: every example has its own N. The batch runs until its last example halts (cost follows the largest
N in the batch); an example that halted keeps computing, but with weight 0 it changes nothing. Inside a loop
with masks, a padding step halts at once and leaves the state unchanged.
"""
from __future__ import annotations

from ..components.base import VType
from ..spec.params import Bool, Float, Int, Param, Str
from .base import ScopeKind, check_body_vector, scope

PORTS = {
    "first": ("inside", "1 at the first ponder step, 0 after"),
    "cost": ("outside", "the ponder cost N + R"),
    "steps": ("outside", "the number of ponder steps N"),
}


class Halting(ScopeKind):
    """Shared checks of the halting scopes."""

    halting = True
    body_refs = ("halt",)
    ports = PORTS

    @classmethod
    def check(cls, node, diags, ir=None) -> bool:
        node.types.update(first=VType(1), cost=VType(1, layout=("ponder",)), steps=VType(1))
        return True

    @classmethod
    def after_body(cls, node, diags, ir=None) -> None:
        """``halt:`` names a node of the body itself giving one probability per example and ponder step."""
        if node.p.halt is None:
            body = node.body.nodes
            unit = next((n for n, x in body.items() if not x.is_scope and x.kind == "halting_unit"), None)
            diags.error(node.pos, node.ypath, f"{node.kind} '{node.name}' needs 'halt:'",
                        f"name the body node giving the halting probability, e.g. halt: {unit}" if unit else
                        "add a halting_unit to the body, e.g. h: {kind: halting_unit, in: ctrl}, and write halt: h")
            return
        check_body_vector(node, "halt", 1, "one probability per example", diags,
                          "add a halting_unit to the body that reads it",
                          "use a halting_unit: sigmoid of a linear map to one unit")


@scope("act")
class Act(Halting):
    """Adaptive Computation Time (Graves 2016): ponder until the halting probabilities sum to 1 − ε."""

    params = {
        "halt": Param(Str(), None, "the body node giving the halting probability h (a halting_unit)"),
        "epsilon": Param(Float(0.0, 1.0), 0.01, "halt once the probabilities sum to at least 1 − epsilon"),
        "max_steps": Param(Int(min=1), 100, "most ponder steps M per step (the last one takes the remainder)"),
    }

    @classmethod
    def emit(cls, node, gen) -> None:
        gen.emit_halting(node)


@scope("pondernet")
class PonderNet(Halting):
    """PonderNet (Banino et al. 2021): halt at step n with probability λ_n; loss = E_p[loss] + β KL(p ‖ prior)."""

    params = {
        "halt": Param(Str(), None, "the body node giving λ_n, the probability of halting at step n if not before"),
        "prior": Param(Float(0.0, 1.0, open_min=True), None, "λ_p of the geometric prior p_G(n) = λ_p (1 − λ_p)^(n−1)"),
        "epsilon": Param(Float(0.0, 1.0), 0.01, "unroll until the halting probabilities sum to more than 1 − epsilon"),
        "max_steps": Param(Int(min=1), 20, "most ponder steps (the last one takes what is left)"),
        "sample": Param(Bool(), True, "outside training, sample each example's halting step (as the paper); false: "
                                      "the p-weighted mean leaves the scope as in training"),
    }

    @classmethod
    def check(cls, node, diags, ir=None) -> bool:
        prior = node.p.prior
        if prior is None:
            diags.error(node.pos, node.ypath, f"pondernet '{node.name}' needs 'prior:', the λ_p of its geometric prior",
                        "e.g. prior: 0.2, which expects 1 / 0.2 = 5 ponder steps")
            return False
        if not 0.0 < prior < 1.0:
            diags.error(node.value_pos.get("prior", node.pos), f"{node.ypath}.prior",
                        f"prior {prior} must lie strictly between 0 and 1", "e.g. prior: 0.2")
            return False
        owner = node.scope.frame.owner
        while owner is not None:
            if owner.kind == "decode":
                diags.error(node.pos, node.ypath, f"pondernet '{node.name}' cannot run inside decode '{owner.name}'",
                            "its loss is an expectation over its steps, which a decoder's outputs do not carry; "
                            "use act")
                return False
            owner = owner.scope.frame.owner
        return super().check(node, diags, ir)

    @classmethod
    def emit(cls, node, gen) -> None:
        gen.emit_halting(node)
