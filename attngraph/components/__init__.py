"""Built-in components; importing this package registers them."""
from . import attention, controllers, conv, halting, layers, multihead, ntm, ops, pointer, positional  # noqa: F401  (registration side effects)
from .base import REGISTRY, Component, ShapeError, VType, component
from .losses import LOSSES, Loss, register_loss
from .ops import LIBRARIES, op

__all__ = ["REGISTRY", "Component", "ShapeError", "VType", "component", "LOSSES", "Loss", "register_loss", "LIBRARIES",
           "op"]
