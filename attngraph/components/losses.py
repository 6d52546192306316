"""Output heads: each loss checks its prediction against its target statically and computes a masked mean."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..spec.params import Float, Param
from .base import ShapeError, VType


class Loss:
    """A loss: ``check(pred, target)`` before any tensor exists; ``__call__(pred, target, mask)`` -> scalar."""

    name = ""
    doc = ""
    target_kind = "size"  # the targets: declaration it pairs with: size (features), classes (indices) or none
    needs: tuple[str, ...] = ()  # keywords a loss without a target receives from the model (see Penalty)
    # settings an output with this loss may give (e.g. huber's delta), checked where the output is declared
    # and passed to ``elementwise`` by keyword; an output of another loss giving one is an error
    options: dict[str, Param] = {}

    def check(self, pred: VType, target: VType) -> None:
        if pred.index:
            raise ShapeError(f"the prediction holds class indices ({pred}); a loss needs scores or features")
        if target.time != pred.time and (target.time is None or pred.time is None):
            raise ShapeError(f"the prediction is {pred} but the target is {target}: one has a time axis, the other not")

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor, **options) -> torch.Tensor:
        raise NotImplementedError(f"loss '{self.name}' must define elementwise()")

    def predict(self, pred: torch.Tensor) -> torch.Tensor:
        return pred

    def expected(self, pred: torch.Tensor, target: torch.Tensor, ponder_p: torch.Tensor | None,
                 **options) -> torch.Tensor:
        """``elementwise``, or with ``ponder_p`` (B, [T,] M) its expectation over a PonderNet's halting step:
        Σₙ pₙ · loss(pred at step n), ``pred`` (B, [T,] M, ...) holding each step's value."""
        if ponder_p is None:
            return self.elementwise(pred, target, **options)
        axis = ponder_p.dim() - 1
        return sum(ponder_p.select(axis, n) * self.elementwise(pred.select(axis, n), target, **options)
                   for n in range(ponder_p.shape[axis]))

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                 ponder_p: torch.Tensor | None = None, **options) -> torch.Tensor:
        """Mean over examples (and valid time steps when ``mask`` (B, T) is given)."""
        per = self.expected(pred, target, ponder_p, **options)  # (B,) or (B, T)
        if mask is None:
            return per.mean()
        mask = mask.to(per.dtype)
        return (per * mask).sum() / mask.sum().clamp_min(1.0)

    def terms(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              ponder_p: torch.Tensor | None = None, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """The numerator and denominator of ``__call__``'s mean before clamping: (sum of the counted
        losses, how many were counted). Data-parallel training adds the denominators of all ranks."""
        per = self.expected(pred, target, ponder_p, **options)
        if mask is None:
            return per.sum(), per.new_tensor(float(per.numel()))
        mask = mask.to(per.dtype)
        return (per * mask).sum(), mask.sum()


class _SameSize(Loss):
    def check(self, pred, target):
        super().check(pred, target)
        if target.index:
            raise ShapeError(f"'{self.name}' needs a target with size:, not classes: ({target})")
        if pred.size != target.size:
            raise ShapeError(f"size mismatch: the prediction has {pred.size} features but the target has {target.size}")


class BCE(_SameSize):
    name, doc = "bce", "binary cross-entropy on logits, summed over features (predict: sigmoid)"

    def elementwise(self, pred, target):
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none").sum(-1)

    def predict(self, pred):
        return torch.sigmoid(pred)


class MSE(_SameSize):
    name, doc = "mse", "squared error, summed over features"

    def elementwise(self, pred, target):
        return (pred - target).pow(2).sum(-1)


class Huber(_SameSize):
    name = "huber"
    doc = ("Huber's loss (Huber 1964), summed over features: ½a² where |a| ≤ δ, else δ(|a| − ½δ), a = pred − target "
           "(δ: the output's delta:, default 1; the Neural Programmer uses 10 for its scalar answers)")
    options = {"delta": Param(Float(0.0, open_min=True), 1.0, "huber: where the loss turns from quadratic to linear")}

    def elementwise(self, pred, target, delta: float = 1.0):
        return F.huber_loss(pred, target, reduction="none", delta=delta).sum(-1)


class CrossEntropy(Loss):
    name, target_kind = "cross_entropy", "classes"
    doc = ("softmax cross-entropy on logits over classes (predict: argmax); label_smoothing: ε trains towards "
           "(1 − ε)·one-hot + ε·uniform (Szegedy et al. 2016; ε = 0.1 in Vaswani et al. 2017)")
    options = {"label_smoothing": Param(Float(0.0, 1.0), 0.0,
                                        "cross_entropy: ε, the probability mass spread evenly over the classes")}

    def check(self, pred, target):
        super().check(pred, target)
        if not target.index:
            raise ShapeError(f"'cross_entropy' needs a target with classes:, not size: ({target})")
        pointer = target.layout is not None and target.layout[0] == "positions"
        if pointer and pred.layout != target.layout:
            raise ShapeError(f"the target holds positions of '{target.layout[1]}', so the prediction must score those "
                             f"positions, but it is {pred}", hint=f"read the scores port of an attention whose keys are "
                             f"on the time axis of '{target.layout[1]}' (a pointer)")
        if not pointer and pred.layout is not None and pred.layout[0] == "positions":
            raise ShapeError(f"the prediction scores positions of '{pred.layout[1]}' but the target has {target.size} "
                             f"classes", hint=f"declare the target with points_to: {pred.layout[1]}")
        if pred.size != target.size:
            raise ShapeError(f"size mismatch: the prediction scores {pred.size} classes but the target has "
                             f"{target.size}")

    def elementwise(self, pred, target, label_smoothing: float = 0.0):
        """pred (B, [T,] K) logits, target (B, [T]) -> (1 − ε)·(−log p_y) + ε·mean_k(−log p_k) (B, [T]).

        A pointer's scores give padded positions the dtype's minimum (see components/attention.py): those
        are not classes, so the uniform part averages over the other positions."""
        nll = F.cross_entropy(pred.movedim(-1, 1), target, reduction="none") if pred.dim() == 3 else \
            F.cross_entropy(pred, target, reduction="none")
        if not label_smoothing:
            return nll
        logp = torch.log_softmax(pred, -1)
        real = pred > torch.finfo(pred.dtype).min  # (B, [T,] K): every class, or a pointer's valid positions
        uniform = -(logp * real).sum(-1) / real.sum(-1).clamp_min(1)
        return (1.0 - label_smoothing) * nll + label_smoothing * uniform

    def predict(self, pred):
        return pred.argmax(-1)


class Penalty(Loss):
    """A loss on a value of the model alone, with no target (``target_kind = "none"``): a regulariser such as
    the doubly stochastic attention penalty, or the score-function surrogate of sampled choices. The model
    passes what it needs by keyword (``needs``): ``keys_mask`` (B, S) bool, the valid positions of an
    alignment's source; ``reward`` (B,) float, detached, each example's reward."""

    target_kind = "none"
    reads: tuple[str, str, str] = ("", "", "")  # the structured value it takes: (layout kind, what, hint)

    def check(self, pred: VType, target: VType | None) -> None:
        kind, what, hint = self.reads
        if pred.layout is None or pred.layout[0] != kind:
            raise ShapeError(f"'{self.name}' reads {what}, not {pred}", hint=hint)

    def terms(self, pred, target, mask=None, **extra):
        """(sum, count): ``elementwise`` gives one value per example ((B,), count B) or per counted step
        ((B, T) with ``mask``, count the counted steps)."""
        per = self.elementwise(pred, target, mask, **extra)
        if per.dim() == 1 or mask is None:
            return per.sum(), per.new_tensor(float(per.numel()))
        mask = mask.to(per.dtype)
        return (per * mask).sum(), mask.sum()

    def __call__(self, pred, target, mask=None, **extra):
        total, count = self.terms(pred, target, mask, **extra)
        return total / count.clamp_min(1.0)


class DoublyStochastic(Penalty):
    name = "doubly_stochastic"
    doc = ("Show, attend and tell's attention penalty (Xu et al. 2015, eq. 14): Σ_s (1 − Σ_t α_ts)² per example, "
           "over the source positions s and the counted decoder steps t (reads an attention's weights)")
    needs = ("keys_mask",)
    reads = ("alignment", "an attention's weights (an alignment)", "read the weights port, e.g. from: dec.att.weights")

    def check(self, pred, target):
        super().check(pred, target)
        if pred.time is None:
            raise ShapeError(f"'doubly_stochastic' sums an alignment over decoder steps, but this one is a single "
                             f"step ({pred})", hint="read the attention from outside its loop or decoder")

    def elementwise(self, pred, target, mask=None, keys_mask=None):
        """pred (B, T, S) alignments, mask (B, T) the counted steps, keys_mask (B, S) -> (B,)."""
        if mask is not None:
            pred = pred * mask.unsqueeze(-1).to(pred.dtype)
        gap = (1.0 - pred.sum(1)).square()  # (B, S)
        if keys_mask is not None:
            gap = gap * keys_mask.to(gap.dtype)
        return gap.sum(-1)


class Reinforce(Penalty):
    name = "reinforce"
    doc = ("REINFORCE for sampled choices (Williams 1992; Xu et al. 2015 §4.1): −(R − b) log p(choice) per "
           "counted step, R an example's log-likelihood under the output named by 'reward:', b the mean "
           "reward of the other examples in the batch (reads a hard attention's logp)")
    needs = ("reward",)
    reads = ("logp", "the log-probability of a sampled choice",
             "read the logp port of an attention with hard: true, e.g. from: dec.att.logp")

    def elementwise(self, pred, target, mask=None, reward=None):
        """pred (B, [T,] 1) log-probabilities of the choices made, reward (B,) -> (B, [T])."""
        batch = reward.shape[0]
        baseline = (reward.sum() - reward) / max(batch - 1, 1) if batch > 1 else torch.zeros_like(reward)
        advantage = (reward - baseline).detach()
        logp = pred.squeeze(-1)
        return -(advantage.view(-1, *([1] * (logp.dim() - 1))) * logp)


class PonderCost(Penalty):
    name = "ponder_cost"
    doc = ("Adaptive Computation Time's ponder cost (Graves 2016, eq. 12): ρ = N + R per counted step, averaged "
           "like the other losses; weight: is τ (reads an act scope's cost)")
    reads = ("ponder", "a halting scope's ponder cost", "read the cost port of a halting scope, e.g. from: seq.ponder.cost")

    def elementwise(self, pred, target, mask=None):
        """pred (B, [T,] 1) -> (B, [T])."""
        return pred.squeeze(-1)


class EntropyBonus(Penalty):
    name = "entropy_bonus"
    doc = ("minus the entropy of softmax(scores), −H = Σ_k p_k log p_k, per example (or counted step): with weight "
           "β it rewards spread-out choices and keeps a softmax from saturating before the alternatives were "
           "tried (entropy regularisation, Williams & Peng 1991; Mnih et al. 2016). Reads scores, e.g. a "
           "program's op scores: from: prog.op")

    def check(self, pred, target):
        if pred.index:
            raise ShapeError(f"'entropy_bonus' reads scores over choices, not class indices ({pred})",
                             hint="read the scores the choice is made from, e.g. from: prog.op")
        if pred.layout is not None and pred.layout[0] != "positions":
            raise ShapeError(f"'entropy_bonus' reads scores over choices, not {pred}",
                             hint="read the scores the choice is made from, e.g. from: prog.op")
        if pred.layout is None and pred.size < 2:
            raise ShapeError(f"'entropy_bonus' needs scores over at least 2 choices, but {pred} has {pred.size}",
                             hint="read a node with one score per choice")

    def elementwise(self, pred, target, mask=None):
        """pred (B, [T,] K) scores -> −H(softmax(pred)) (B, [T])."""
        logp = torch.log_softmax(pred, -1)
        return (logp.exp() * logp).sum(-1)


LOSSES: dict[str, Loss] = {cls.name: cls() for cls in (BCE, CrossEntropy, MSE, Huber, DoublyStochastic, Reinforce,
                                                       PonderCost, EntropyBonus)}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Register a Loss subclass (plug-ins use this the way components use @component)."""
    LOSSES[cls.name] = cls()
    return cls

