"""Built-in scopes; importing this package registers them."""
from . import decode, halting, loop  # noqa: F401  (registration side effects)
from .base import SCOPES, ScopeKind, scope

__all__ = ["SCOPES", "ScopeKind", "scope"]
