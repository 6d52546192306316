"""Built-in scopes; importing this package registers them."""
from . import decode, halting, loop, program  # noqa: F401  (registration side effects)
from .base import SCOPES, ScopeKind, scope

__all__ = ["SCOPES", "ScopeKind", "scope"]
