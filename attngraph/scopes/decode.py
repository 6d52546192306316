"""``decode``: an autoregressive decoder whose step is any subgraph, fed its own previous output token.

Inside the body, ``prev(<the decode node>)`` is the token the decoder emitted at the previous step: the
``bos`` token at the first step, then, in training, the previous *target* token (teacher forcing, for a
fraction ``teacher_forcing`` of the examples at each step, the model's own greedy choice for the rest),
and in evaluation the model's own greedy choice (free running: no target token ever enters the decoder
outside training). The scope's ``output`` is the body node that scores the next token (logits over the
target's classes); read from outside, it is the sequence of those scores on the target's time axis.

How long it runs: in training and whenever the batch holds the target, as many steps as the target has
(so losses and metrics line up position by position); with no target in the batch (prediction), up to
``max_length`` steps, stopping early once every example has emitted ``eos``. Beam search
(``CompiledModel.generate``) returns token ids instead of scores; see :mod:`attngraph.compiler.beam`.

A pointer (Vinyals et al. 2015) is a decoder whose target is declared ``points_to:`` an input: its tokens are
positions of that input, ``prev(dec)`` is the position chosen last (``pick`` reads the input there), its
output is an attention's ``scores`` over the input's positions, ``bos`` defaults to 0 (the pointer tasks'
end marker) and ``constraint`` (no_repeat, permutation) forbids choices: their scores become ``BLOCKED``
(codegen.py), in training, free running and beam search alike.

Example (Bahdanau et al. 2015: the attention query is the previous decoder state)::

    dec:
      kind: decode
      target: tgt
      body:
        emb:    {kind: embedding, size: 32, in: prev(dec)}
        att:    {kind: attention, score: additive, query: prev(rnn), keys: enc}
        rnn:    {kind: gru, size: 64, in: [emb, att]}
        logits: {kind: linear, size: 14, in: [rnn, att, emb]}
      output: logits
"""
from __future__ import annotations

from ..components.base import VType
from ..spec.diagnostics import did_you_mean
from ..spec.params import Choice, Float, Int, Param, Str
from .base import ScopeKind, scope


@scope("decode")
class Decode(ScopeKind):
    """Autoregressive decoder: runs its body once per output token, fed prev(<this node>), its last token."""

    feeds_back = True  # prev(<this scope>) inside its body: the previous token (resolve.py)
    params = {
        "target": Param(Str(), doc="the target (declared with classes:) whose tokens the decoder writes"),
        "max_length": Param(Int(min=1), 50, "most steps when the batch holds no target (prediction)"),
        "teacher_forcing": Param(Float(0.0, 1.0), 1.0,
                                 "in training, the fraction of examples fed the previous target token at each "
                                 "step (the rest get their own greedy choice)"),
        "bos": Param(Int(min=0), 1, "the token fed at the first step (the seq2seq tasks' <bos> is 1)"),
        "eos": Param(Int(min=0), 0, "the token that ends an answer (the seq2seq tasks' <eos> is 0)"),
        "beam": Param(Int(min=1), 1, "beam width of generate() and 'attngraph eval --beam' (1: greedy)"),
        "length_penalty": Param(Float(min=0.0), 1.0,
                                "beam search ranks finished answers by log p / length^this (0: raw log p)"),
        "constraint": Param(Choice("none", "no_repeat", "permutation"), "none",
                            "a points_to: target only: no_repeat never chooses a position twice (but eos); "
                            "permutation also chooses eos only once every valid position is chosen"),
    }

    @classmethod
    def check(cls, node, diags, ir=None) -> bool:
        p = node.p
        if ir is None or not isinstance(p.target, str):
            return False
        label, pos = f"{node.ypath}.target", node.value_pos.get("target", node.pos)
        t = ir.targets.get(p.target)
        if t is None:
            diags.error(pos, label, f"no target named '{p.target}' to decode",
                        did_you_mean(p.target, ir.targets) if ir.targets else "declare it under targets:")
            return False
        if not t.index or t.time is None:
            diags.error(pos, label, f"target '{p.target}' is {t}, not a sequence of tokens",
                        "a decoder writes a target declared with classes: or points_to: (and time: true)")
            return False
        pointer = t.layout is not None and t.layout[0] == "positions"
        if p.constraint not in ("none", None) and not pointer:
            diags.error(node.value_pos.get("constraint", node.pos), f"{node.ypath}.constraint",
                        f"constraint {p.constraint} chooses among positions, but target '{p.target}' has classes",
                        "it applies to a pointer: a target declared with points_to:")
            return False
        if pointer:  # the tokens are positions of the input: any position is one, bos defaults to 0 (its marker)
            if "bos" not in node.value_pos:
                p.bos = 0
            node.types["token"] = VType(0, None, index=True, layout=t.layout)
            return True
        for key in ("bos", "eos"):
            value = getattr(p, key)
            if isinstance(value, int) and value >= t.size:
                diags.error(node.value_pos.get(key, node.pos), f"{node.ypath}.{key}",
                            f"{key} {value} is not a class of target '{p.target}' (it has {t.size}: 0..{t.size - 1})")
                return False
        node.types["token"] = VType(t.size, None, index=True)
        return True

    @classmethod
    def after_body(cls, node, diags, ir=None) -> None:
        """The output must be a body component scoring the target's classes, one vector per step."""
        t = ir.targets[node.p.target]
        label, pos = f"{node.ypath}.output", node.value_pos.get("output", node.pos)
        if node.p.output is None:
            diags.error(node.pos, node.ypath, f"decode '{node.name}' needs 'output:'",
                        "name the body node that scores the next token, e.g. output: logits")
            return
        if node.default is None:
            return  # reported where it is written
        inner, port, through = node.default
        if through or inner.is_scope:
            diags.error(pos, label, f"the output of decode '{node.name}' must be a node of its own body",
                        "add a linear layer in the body that reads it")
            return
        got = inner.types.get(port)
        if got is None:
            return
        if t.layout is not None and t.layout[0] == "positions":
            want = ("positions", t.layout[1])
            if got.index or got.time is not None or got.layout != want:
                diags.error(pos, label, f"'{node.p.output}' is {got}, but decode '{node.name}' needs scores over the "
                            f"positions of '{t.layout[1]}' (target '{node.p.target}' points to them)",
                            f"end the body with an attention over a sequence on the time axis of '{t.layout[1]}' and "
                            f"name its scores, e.g. output: ptr.scores")
            return
        if got.index or got.layout is not None or got.time is not None or got.size != t.size:
            diags.error(pos, label, f"'{node.p.output}' is {got}, but decode '{node.name}' needs scores over the "
                        f"{t.size} classes of target '{node.p.target}'",
                        f"end the body with a linear layer of size {t.size}")

    @classmethod
    def output_type(cls, node, inner: VType) -> VType:
        return inner.with_time(node.p.target)

    @classmethod
    def emit(cls, node, gen) -> None:
        gen.emit_decode(node)
