"""attngraph: attention-augmented neural networks declared as graphs in YAML, compiled to PyTorch.

    >>> import attngraph
    >>> spec = attngraph.load("specs/examples/lstm_seq.yaml", overrides=["model.ctrl.size=64"])
    >>> model = attngraph.build(spec)          # an ordinary torch.nn.Module
    >>> trained = attngraph.pretrained("ntm-copy")  # a gallery entry with its shipped weights
"""
from . import components, scopes, tasks, training  # noqa: F401  (register the built-in kinds, tasks, sections)
from .api import Spec, build, check, load, load_plugins, pretrained
from .compiler.module import CompiledModel
from .components import LOSSES, Component, Loss, ShapeError, VType, component, op, register_loss
from .scopes import ScopeKind, scope
from .spec.diagnostics import Diagnostic, SpecError
from .spec.params import Bool, Choice, Either, Float, Int, IntList, IntRange, Param, RefList, RefType, Str

__version__ = "0.1.0"
__all__ = [
    "Spec", "build", "check", "load", "load_plugins", "pretrained", "CompiledModel", "LOSSES", "Component", "Loss",
    "ShapeError", "VType", "component", "op", "register_loss", "ScopeKind", "scope", "Diagnostic", "SpecError",
    "Bool", "Choice", "Either", "Float", "Int", "IntList", "IntRange", "Param", "RefList", "RefType", "Str",
]
