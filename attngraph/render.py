"""Architecture diagrams: a spec's IR drawn as Graphviz DOT (never traced), and rendered with ``dot``.

One graph node per model input, component and model output; scopes (``loop``, and the ``group`` an include
becomes) are clusters, nested as the scopes are. Nodes are coloured by component family, edges are labelled
with the inferred size of the value they carry (``9``, ``seq×9``, ``idx<12>``), and recurrent ``prev()``
edges are dashed, labelled ``t−1`` and left out of the layout's ranking.

    >>> import attngraph
    >>> from attngraph.render import render, to_dot
    >>> spec = attngraph.load("specs/examples/loop_feedback.yaml")
    >>> text = to_dot(spec)                      # DOT source, byte-for-byte deterministic
    >>> render(spec, "model.svg")                # needs Graphviz's `dot` program
"""
from __future__ import annotations

import html
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

from .api import Spec, load
from .components.base import VType
from .ir import IR, Edge, NodeIR, Output, ScopeIR

RANKDIRS = ("LR", "TB", "RL", "BT")
FORMATS = (".dot", ".svg", ".png", ".pdf")
INSTALL_HINT = "apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS), or conda install graphviz"

# Paul Tol's colour-blind-safe "light" scheme (black text stays readable on every fill).
FAMILY_COLOURS = {
    "input": "#99DDFF",
    "controller": "#77AADD",
    "memory": "#EEDD88",
    "attention": "#EE8866",
    "halting": "#FFAABB",
    "ops": "#BBCC33",
    "layer": "#DDDDDD",
    "encoder": "#44BB99",
}
OTHER_COLOUR = "#FFFFFF"
CLUSTER_FILLS = ("#F4F4F4", "#E9E9E9", "#DEDEDE")  # frame scopes (loops), darker as they nest
LINE_COLOUR = "#555555"
PREV_COLOUR = "#CC6677"
FONT = "Helvetica"

_GRAPH_ATTRS = (f'fontname="{FONT}", fontsize=13, labelloc=t, labeljust=l, compound=true, newrank=true, '
                'nodesep=0.35, ranksep=0.45, pad=0.2, bgcolor="white"')
_NODE_ATTRS = (f'shape=box, style="rounded,filled", fontname="{FONT}", fontsize=11, color="{LINE_COLOUR}", '
               'penwidth=0.8, margin="0.14,0.06", height=0.4')
_EDGE_ATTRS = (f'fontname="{FONT}", fontsize=9, color="{LINE_COLOUR}", fontcolor="#333333", arrowsize=0.7, '
               'penwidth=0.9')
_OUTPUT_ATTRS = 'style="rounded", fontsize=9, height=0.3, margin="0.08,0.03", color="#777777"'


class DotNotFound(RuntimeError):
    """Graphviz's ``dot`` program is not installed; the DOT source was written to ``dot_path`` instead."""

    def __init__(self, dot_path: Path):
        self.dot_path = Path(dot_path)
        super().__init__(f"Graphviz's 'dot' program was not found on PATH; the DOT source was written to {self.dot_path}. "
                         f"To render images, install Graphviz: {INSTALL_HINT}")


# --------------------------------------------------------------------------------------------------- public API
def to_dot(spec: Spec | str | Path, rankdir: str = "LR") -> str:
    """The spec's architecture as deterministic Graphviz DOT text (same spec, same bytes).

    ``spec`` is a loaded :class:`~attngraph.api.Spec` (or a spec file to load); ``rankdir`` is the direction
    of the data flow: LR, TB, RL or BT.
    """
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
    spec = spec if isinstance(spec, Spec) else load(spec)
    ir = spec.ir
    sizes = _SizeFormat(ir)
    lines = [f"digraph {_q(spec.name)} {{",
             f"  graph [{_GRAPH_ATTRS}, rankdir={rankdir}, label={_title(spec)}];",
             f"  node [{_NODE_ATTRS}];",
             f"  edge [{_EDGE_ATTRS}];",
             ""]
    lines += [f"  {_node_stmt(node)}" for node in ir.inputs.values()]
    ports = {(e.src, e.port) for e in ir.edges if e.src.is_scope and e.port in e.src.cls.ports
             and e not in ir.ponders.values()}
    lines += _scope_lines(ir.root, depth=0, indent="  ", ports=ports)
    lines += [f"  {_output_stmt(out)}" for out in ir.outputs.values()]
    lines.append("")
    lines += [f"  {stmt}" for stmt in _edge_stmts(ir, sizes)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(spec: Spec | str | Path, out_path: str | Path, rankdir: str = "LR") -> Path:
    """Write the diagram to ``out_path``; the suffix picks the format: .dot (source), .svg, .png or .pdf.

    Image formats run Graphviz's ``dot``. Without it the DOT source is written next to ``out_path`` (same
    stem, ``.dot``) and :class:`DotNotFound` is raised. Returns the path written.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot render to '{out.name}': unsupported suffix '{out.suffix}'; "
                         f"use one of {', '.join(FORMATS)}")
    source = to_dot(spec, rankdir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".dot":
        out.write_text(source, encoding="utf-8")
        return out
    dot = shutil.which("dot")
    if dot is None:
        fallback = out.with_suffix(".dot")
        fallback.write_text(source, encoding="utf-8")
        raise DotNotFound(fallback)
    _run_dot(dot, source, suffix[1:], out)
    return out


def _run_dot(dot: str, source: str, fmt: str, out: Path) -> None:
    """Run ``dot -T<fmt>`` on ``source``, writing ``out``; a failure raises RuntimeError with dot's message."""
    result = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=source.encode("utf-8"),
                            capture_output=True, timeout=120, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"Graphviz 'dot' failed (exit status {result.returncode}): {message}")


# ------------------------------------------------------------------------------------------------ quoting
def _q(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, newlines as DOT's centred line break)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + escaped.replace("\n", "\\n") + '"'


def _label(*lines: str) -> str:
    """A multi-line DOT label."""
    return _q("\n".join(lines))


def _title(spec: Spec) -> str:
    """The graph title: the model name in bold and, below it, the spec's doc (an HTML-like label)."""
    doc_node = spec.tree.get("doc")
    doc = str(doc_node.value).strip() if doc_node is not None and doc_node.value is not None else ""
    title = f"<b>{html.escape(spec.name)}</b>"
    if doc:
        wrapped = "<br/>".join(html.escape(line) for line in textwrap.wrap(" ".join(doc.split()), 90))
        title += f'<br/><font point-size="10" color="#555555">{wrapped}</font>'
    return f"<{title}>"


def _node_id(node: NodeIR) -> str:
    return _q(("in:" if node.is_input else "node:") + node.dotted)


def _output_id(out: Output) -> str:
    return _q(f"out:{out.name}")


def _port_id(scope_node: NodeIR, port: str) -> str:
    return _q(f"port:{scope_node.dotted}.{port}")


def _source_id(node: NodeIR, port: str) -> str:
    """Where an edge reading ``node.port`` starts: a scope's own value (an act's cost) from its port node,
    another scope's value from the node that computes it (a decoder's token: the node that scores it)."""
    if node.is_scope and port in node.cls.ports:
        return _port_id(node, port)
    return _node_id(node.default[0] if node.is_scope and node.default else node)


def _cluster_id(scope_node: NodeIR) -> str:
    return _q(f"cluster_{scope_node.dotted}")


# ------------------------------------------------------------------------------------------------- sizes
class _SizeFormat:
    """Compact value types: ``9``, ``idx<12>``, ``seq×9``; the time axis is named (``seq[x]×9``) only when
    the model has more than one."""

    def __init__(self, ir: IR):
        axes = {t.time for node in [*ir.inputs.values(), *ir.nodes()] for t in node.types.values() if t.time}
        self.named = len(axes) > 1

    @staticmethod
    def inner(t: VType) -> str:
        if t.layout is not None:  # a structured value: image[1×24×80], memory[128×20], alignment[src], logp
            return str(t.with_time(None))
        return f"idx<{t.size}>" if t.index else str(t.size)

    def __call__(self, t: VType | None) -> str:
        if t is None:
            return "?"
        if t.time is None:
            return self.inner(t)
        return f"seq[{t.time}]×{self.inner(t)}" if self.named else f"seq×{self.inner(t)}"


# ------------------------------------------------------------------------------------------------- nodes
def _node_stmt(node: NodeIR) -> str:
    """One input or component node: name, kind and output size, filled with its family's colour."""
    first = next(iter(node.types.values()), None)
    size = _SizeFormat.inner(first) if first is not None else "?"
    colour = FAMILY_COLOURS.get(node.family, OTHER_COLOUR)
    return f'{_node_id(node)} [label={_label(node.name, f"{node.kind} · {size}")}, fillcolor="{colour}"];'


def _output_stmt(out: Output) -> str:
    """A model output: a small node named after it, with its loss."""
    loss = out.loss if out.loss != "none" else "no loss"
    return f"{_output_id(out)} [label={_label(out.name, loss)}, fillcolor=\"{OTHER_COLOUR}\", {_OUTPUT_ATTRS}];"


def _scope_lines(scope: ScopeIR, depth: int, indent: str, ports: set[tuple[int, str]]) -> list[str]:
    """The component nodes of ``scope`` in spec order, each nested scope as a cluster; ``ports``: the scopes'
    own values that are read, (scope, port), drawn as small nodes in their cluster."""
    lines: list[str] = []
    for node in scope.nodes.values():
        if node.is_input:
            continue
        if node.is_scope:
            lines += _cluster_lines(node, depth, indent, ports)
        else:
            lines.append(indent + _node_stmt(node))
    return lines


def _cluster_lines(node: NodeIR, depth: int, indent: str, ports: set[tuple[int, str]]) -> list[str]:
    """A scope as ``subgraph cluster_<path>``: loops filled grey (darker when nested), groups dashed; a
    halting scope names its halting node and rule, and shows its values that are read (first, cost, steps)."""
    inner = indent + "  "
    title = f"{node.name} ({node.kind}{', reverse' if getattr(node.p, 'reverse', False) is True else ''})"
    own = []
    if node.kind == "decode":
        title = f"{node.name} (decode → {node.p.target}, teacher forcing {node.p.teacher_forcing:g}" + \
            (f", {node.p.constraint.replace('_', ' ')})" if node.p.constraint not in ("none", None) else ")")
    if node.kind == "program":
        title = f"{node.name} (program: {node.p.steps} steps of {node.p.library}" + (", hard)" if node.p.hard else ")")
    if node.cls.halting:
        rule = f"λ_p {node.p.prior:g}" if node.kind == "pondernet" else f"ε {node.p.epsilon:g}"
        title = f"{node.name} ({node.kind}: halt {node.p.halt}, {rule}, ≤ {node.p.max_steps} steps)"
        what = {"first": "1 at ponder step 1", "steps": "N ponder steps",
                "cost": "KL(p ‖ prior)" if node.kind == "pondernet" else "ρ = N + R"}
        own = [f"{inner}{_port_id(node, port)} [label={_label(port, what[port])}, shape=note, fillcolor=\"#ffffff\"];"
               for port in node.cls.ports if (node, port) in ports]
    if node.cls.inline:
        style = 'style="rounded,dashed", color="#888888"'
        nested = depth
    else:
        style = f'style="rounded,filled", color="#999999", fillcolor="{CLUSTER_FILLS[min(depth, len(CLUSTER_FILLS) - 1)]}"'
        nested = depth + 1
    return [f"{indent}subgraph {_cluster_id(node)} {{",
            f'{inner}graph [label={_q(title)}, {style}, fontsize=11, fontcolor="#333333", labeljust=l];',
            *own,
            *_scope_lines(node.body, nested, inner, ports),
            f"{indent}}}"]


# ------------------------------------------------------------------------------------------------- edges
def _edge_stmts(ir: IR, sizes: _SizeFormat) -> Iterator[str]:
    """Every edge: one per reference, in spec order, then one into each model output."""
    for node in ir.nodes():
        several = len(node.inputs) > 1
        for edge in node.edges():
            if node.is_scope:
                anchor = _first_component(node.body)
                if anchor is not None and not _read_as_elements(ir, node, edge):
                    yield _edge_stmt(edge, _node_id(anchor), sizes, several, f", lhead={_cluster_id(node)}")
            else:
                yield _edge_stmt(edge, _node_id(node), sizes, several)
    for out in ir.outputs.values():
        yield f"{_source_id(out.edge.src, out.edge.port)} -> {_output_id(out)} [label={_q(sizes(out.edge.type))}];"


def _edge_stmt(edge: Edge, head: str, sizes: _SizeFormat, several: bool, extra: str = "") -> str:
    """An edge from the node that computes the value (inside its cluster, for a scope output) to ``head``.

    A loop's per-step element comes straight from the sequence it steps through; ``prev()`` edges are
    dashed, labelled ``t−1`` and do not constrain the ranking.
    """
    parts = ["t−1"] if edge.prev else []
    names = (edge.port if edge.port != "out" else "") + (f"→{edge.param}" if several else "")
    parts += [names] if names else []
    parts.append(sizes(edge.type))
    attrs = f"label={_q(' · '.join(parts))}"
    if edge.prev:
        attrs += f', style=dashed, constraint=false, color="{PREV_COLOUR}", fontcolor="{PREV_COLOUR}"'
    return f"{_source_id(edge.src, edge.port)} -> {head} [{attrs}{extra}];"


def _read_as_elements(ir: IR, scope_node: NodeIR, edge: Edge) -> bool:
    """True when body nodes read ``edge``'s value element by element (those edges draw it instead)."""
    return any(e.element_of is scope_node and e.key() == edge.key() for e in ir.edges)


def _first_component(scope: ScopeIR) -> NodeIR | None:
    """The first component node of a scope's body, looking into nested scopes (an anchor for lhead)."""
    for node in scope.nodes.values():
        if node.is_scope:
            found = _first_component(node.body)
            if found is not None:
                return found
        elif not node.is_input:
            return node
    return None
