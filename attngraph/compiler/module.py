"""The compiled model: an ordinary ``nn.Module`` whose forward is generated from the IR."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..components.losses import LOSSES
from ..ir import IR, NodeIR, ScopeIR
from .codegen import compile_forward


class CompiledModel(nn.Module):
    """A model built from a spec.

    ``forward(batch)`` takes a dict of input tensors (``(B, T, size)`` features or ``(B, T)`` token indices
    for a sequence input, without ``T`` otherwise; an optional ``"<input>.mask"`` (B, T) bool marks the
    valid steps of variable-length sequences) and returns a dict of output tensors (scores/logits). With
    halting scopes it also holds ``"ponder:<scope path>"`` (N, the ponder steps per step, for
    ``mean_ponder``) and, for an output read from a PonderNet, ``"<output>.ponder_values"`` and
    ``"<output>.ponder_p"`` (each ponder step's value and weight: its loss is their expectation).
    ``loss(outputs, batch)`` returns the weighted total and the per-output losses; ``code`` is the generated
    forward source. Parameters are named after the spec: ``nodes.<scope>.<node>.<torch name>``.
    """

    def __init__(self, ir: IR):
        super().__init__()
        self.ir = ir
        self.nodes = nn.ModuleDict()
        self._populate(ir.root, self.nodes, {e.src for e in ir.edges if e.prev})
        # only input masks change the forward pass; a target's mask ("y.mask") is for the loss alone
        self._input_masks = tuple(f"{n}.mask" for n, node in ir.inputs.items() if node.types["out"].time == n)
        # (an input on another input's time axis, time: OTHER, has no mask of its own: OTHER.mask covers it)
        self.register_buffer("_float", torch.zeros(()), persistent=False)
        self.code, self._forward = compile_forward(ir, masked=False)
        self.masked_code, self._forward_masked = compile_forward(ir, masked=True)
        self._forward_record = None  # compiled on first use of record()
        self._forward_beam: dict[bool, Callable] = {}  # beam-search forwards (unmasked, masked), on first use
        self._beam = 0  # the width generate() asks for (0: each decoder's own 'beam:')

    def _populate(self, scope: ScopeIR, into: nn.ModuleDict, carried: set[NodeIR]) -> None:
        """Build every node's module into ``into``; ``carried`` holds the nodes read through prev()."""
        for name, node in scope.nodes.items():
            if node.is_input:
                continue
            if node.is_scope:
                into[name] = nn.ModuleDict()
                self._populate(node.body, into[name], carried)
                continue
            module = node.cls(node.p, node.in_types, node.types)
            if node in carried and node.p.init == "learned" and not node.cls.state_is_output:
                module.prev_init = nn.Parameter(torch.zeros(node.types["out"].size))
            into[name] = module

    def load_checkpoint(self, path: str | Path) -> dict:
        """Load the parameters of an attngraph checkpoint: a ``.safetensors`` file written by ``attngraph train``
        or shipped with a gallery entry, or a run directory (its ``checkpoints/best.safetensors``, else
        ``last``). Returns the checkpoint's metadata (step, metrics, ...). A missing, torn or foreign checkpoint
        raises :class:`attngraph.training.checkpoint.CheckpointError` saying which."""
        from ..training.checkpoint import CheckpointError, load_weights

        path = Path(path)
        if path.is_dir():
            found = [path / "checkpoints" / f"{n}.safetensors" for n in ("best", "last")]
            path = next((p for p in found if p.is_file()), None)
            if path is None:
                raise CheckpointError(f"{found[0].parent.parent} holds no checkpoints/best.safetensors or "
                                      "last.safetensors")
        return load_weights(self, path)

    def compile_steps(self, compiler: Callable[[Callable], Callable] | None = None) -> int:
        """Run the body of every loop (one without nested loops) through ``compiler``, by default
        ``torch.compile``: the body becomes one function of (step inputs, carried state), so a single graph
        serves every step of every sequence length (compiling the whole forward would unroll the loop and
        compile again for each new length). Returns the number of loop bodies compiled (0: no loops)."""
        compiler = compiler or torch.compile
        self.code, self._forward = compile_forward(self.ir, masked=False, step_compiler=compiler)
        self.masked_code, self._forward_masked = compile_forward(self.ir, masked=True, step_compiler=compiler)
        return len(self._forward.__globals__["_steps"])

    def record(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The outputs and every watched port's values (``"seq.read.weights"`` -> (B, T, N) inside a loop):
        what `attngraph inspect` draws. Input masks are ignored: give equal-length examples (e.g. one)."""
        if self._forward_record is None:
            _, self._forward_record = compile_forward(self.ir, masked=False, record=True)
        return self._forward_record(self, batch)

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], beam: int | None = None) -> dict[str, torch.Tensor]:
        """Decode with beam search: every ``decode`` scope's value becomes the token ids (B, T') of each
        example's best beam (padded with its eos), the other outputs are as in ``forward``. ``beam`` sets the
        width of every decoder (default: each one's ``beam:``); width 1 is greedy decoding. Runs in eval mode
        and never reads the targets, even when the batch holds them."""
        if not any(n.kind == "decode" for n in self.ir.nodes()):
            raise ValueError(f"model '{self.ir.name}' has no decode scope to generate with")
        if beam is not None and beam < 1:
            raise ValueError(f"beam width must be at least 1, not {beam}")
        masked = self._needs_masks(batch)
        if masked not in self._forward_beam:
            self._forward_beam[masked] = compile_forward(self.ir, masked=masked, beam=True)[1]
        was_training, self._beam = self.training, beam or 0
        self.eval()
        try:
            return self._forward_beam[masked](self, batch)
        finally:
            self.train(was_training)
            self._beam = 0

    def _needs_masks(self, batch: dict[str, torch.Tensor]) -> bool:
        """Whether an input mask marks padding (an all-true mask, e.g. a batch of one, needs no masking)."""
        return any(key in batch and not bool(batch[key].all()) for key in self._input_masks)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._forward_masked(self, batch) if self._needs_masks(batch) else self._forward(self, batch)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of every output's loss against ``batch[target]``: a masked mean over the steps that
        ``batch["<target>.mask"]`` marks, or else over the valid steps of the input (``"<input>.mask"``)."""
        parts: dict[str, torch.Tensor] = {}
        for name, out in self.ir.outputs.items():
            if out.loss != "none":
                pred, target, mask, extra = self._loss_args(out, outputs, batch)
                parts[name] = LOSSES[out.loss](pred, target, mask, **extra)
        return self._weighted(parts), parts

    def loss_terms(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each output's loss as (sum, count) before the division (see :meth:`Loss.terms`): data-parallel
        training divides by the count of all ranks, so a split batch gives the loss of the whole batch."""
        return {name: LOSSES[out.loss].terms(*(args := self._loss_args(out, outputs, batch))[:3], **args[3])
                for name, out in self.ir.outputs.items() if out.loss != "none"}

    def _loss_args(self, out, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple:
        """(prediction, target or None, mask, extra keywords) of an output's loss. A loss without a target
        (:class:`~attngraph.components.losses.Penalty`) gets what it ``needs``: ``keys_mask``, the valid
        positions of the source an alignment spans; ``reward``, each example's log-likelihood under the
        output named by ``reward:`` (minus its loss summed over that output's counted steps), detached."""
        loss, extra = LOSSES[out.loss], dict(out.options)
        if "keys_mask" in loss.needs:
            layout = out.edge.type.layout
            extra["keys_mask"] = batch.get(f"{layout[1]}.mask") if layout is not None and len(layout) > 1 else None
        if "reward" in loss.needs:
            extra["reward"] = self._reward(self.ir.outputs[out.reward], outputs, batch)
        target = batch[out.target] if out.target is not None else None
        if f"{out.name}.ponder_p" in outputs:  # PonderNet: the expected loss over its halting step
            extra["ponder_p"] = outputs[f"{out.name}.ponder_p"]
            return outputs[f"{out.name}.ponder_values"], target, self._loss_mask(out, batch), extra
        return outputs[out.name], target, self._loss_mask(out, batch), extra

    def _reward(self, out, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,): minus ``out``'s loss of each example, summed over its counted steps (its log-likelihood for
        cross-entropy), without gradient."""
        with torch.no_grad():
            per = LOSSES[out.loss].elementwise(outputs[out.name], batch[out.target], **out.options)
            mask = self._loss_mask(out, batch)
            if per.dim() > 1:
                per = (per * mask.to(per.dtype)).sum(1) if mask is not None else per.sum(1)
            return -per

    def combine_terms(self, terms: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      counts: dict[str, torch.Tensor] | None = None, scale: float = 1.0) -> torch.Tensor:
        """The weighted loss from :meth:`loss_terms`, each sum divided by ``counts[name]`` (default: its own
        count) and the total multiplied by ``scale``."""
        parts = {name: s / (counts or {}).get(name, c).clamp_min(1.0) for name, (s, c) in terms.items()}
        total = self._weighted(parts)
        return total if scale == 1.0 else total * scale

    def _loss_mask(self, out, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        mask = batch.get(f"{out.target}.mask") if out.target is not None else None  # the steps it counts
        if mask is None and out.edge.type.time:
            mask = batch.get(f"{out.edge.type.time}.mask")  # else the valid steps of the input sequence
        return mask

    def _weighted(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, value in parts.items():
            weight = self.ir.outputs[name].weight
            weighted = value if weight == 1.0 else weight * value  # no extra autograd node for weight 1
            total = weighted if total is None else total + weighted
        return self._float.new_zeros(()) if total is None else total

    @property
    def output_keys(self) -> set[str]:
        """Every key ``forward`` returns: the declared outputs and what halting scopes add (see the class)."""
        keys = set(self.ir.outputs) | {f"ponder:{dotted}" for dotted in self.ir.ponders}
        for name, out in self.ir.outputs.items():
            if out.target is not None and any(s.kind == "pondernet" for s in out.edge.into):
                keys |= {f"{name}.ponder_values", f"{name}.ponder_p"}
        return keys

    @property
    def extra_metric_names(self) -> tuple[str, ...]:
        """Metrics of the model itself, measured beside the task's: ``mean_ponder`` for a halting scope (one
        per scope, ``mean_ponder.<path>``, when there are several)."""
        return extra_metric_names(self.ir)

    def _ponder_metric(self, dotted: str) -> str:
        return _ponder_metric(self.ir, dotted)

    def extra_metrics(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """``mean_ponder``: the mean number of ponder steps N per counted step (the valid steps of the
        sequence the scope's loop runs over)."""
        out = {}
        for dotted, edge in self.ir.ponders.items():
            steps = outputs[f"ponder:{dotted}"].squeeze(-1).to(torch.float64)  # (B,) or (B, T)
            mask = batch.get(f"{edge.type.time}.mask") if edge.type.time else None
            if mask is None:
                out[self._ponder_metric(dotted)] = float(steps.mean())
            else:
                mask = mask.to(steps.dtype)
                out[self._ponder_metric(dotted)] = float((steps * mask).sum() / mask.sum().clamp_min(1.0))
        return out

    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predictions from scores: sigmoid for bce outputs, argmax for cross_entropy, as is otherwise."""
        return {name: LOSSES[o.loss].predict(outputs[name]) if o.loss in LOSSES else outputs[name]
                for name, o in self.ir.outputs.items()}

    def node_module(self, path: str) -> nn.Module:
        """The module of the node at a dotted path, e.g. ``seq.ctrl``."""
        module: nn.Module = self.nodes
        for part in path.split("."):
            module = module[part]
        return module


def _ponder_metric(ir: IR, dotted: str) -> str:
    return "mean_ponder" if len(ir.ponders) == 1 else f"mean_ponder.{dotted}"


def extra_metric_names(ir: IR) -> tuple[str, ...]:
    """The metrics a model measures beside its task's (see :meth:`CompiledModel.extra_metric_names`)."""
    return tuple(_ponder_metric(ir, d) for d in ir.ponders)
