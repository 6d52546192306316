"""Output heads: each loss checks its prediction against its target statically and computes a masked mean."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import ShapeError, VType


class Loss:
    """A loss: ``check(pred, target)`` before any tensor exists; ``__call__(pred, target, mask)`` -> scalar."""

    name = ""
    doc = ""
    target_kind = "size"  # the targets: declaration it pairs with: size (features) or classes (indices)

    def check(self, pred: VType, target: VType) -> None:
        if pred.index:
            raise ShapeError(f"the prediction holds class indices ({pred}); a loss needs scores or features")
        if target.time != pred.time and (target.time is None or pred.time is None):
            raise ShapeError(f"the prediction is {pred} but the target is {target}: one has a time axis, the other not")

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"loss '{self.name}' must define elementwise()")

    def predict(self, pred: torch.Tensor) -> torch.Tensor:
        return pred

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over examples (and valid time steps when ``mask`` (B, T) is given)."""
        per = self.elementwise(pred, target)  # (B,) or (B, T)
        if mask is None:
            return per.mean()
        mask = mask.to(per.dtype)
        return (per * mask).sum() / mask.sum().clamp_min(1.0)

    def terms(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The numerator and denominator of ``__call__``'s mean before clamping: (sum of the counted
        losses, how many were counted). Data-parallel training adds the denominators of all ranks."""
        per = self.elementwise(pred, target)
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


class CrossEntropy(Loss):
    name, doc, target_kind = "cross_entropy", "softmax cross-entropy on logits over classes (predict: argmax)", "classes"

    def check(self, pred, target):
        super().check(pred, target)
        if not target.index:
            raise ShapeError(f"'cross_entropy' needs a target with classes:, not size: ({target})")
        if pred.size != target.size:
            raise ShapeError(f"size mismatch: the prediction scores {pred.size} classes but the target has "
                             f"{target.size}")

    def elementwise(self, pred, target):
        return F.cross_entropy(pred.movedim(-1, 1), target, reduction="none") if pred.dim() == 3 else \
            F.cross_entropy(pred, target, reduction="none")

    def predict(self, pred):
        return pred.argmax(-1)


LOSSES: dict[str, Loss] = {cls.name: cls() for cls in (BCE, CrossEntropy, MSE)}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Register a Loss subclass (plug-ins use this the way components use @component)."""
    LOSSES[cls.name] = cls()
    return cls

