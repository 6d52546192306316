"""Pictures of what a model did on one example: its inputs, outputs and targets, and every watched port
(attention weightings, memory contents) over time. Generic: a component lists the ports worth drawing in
``watch`` and the compiled model records them (:meth:`CompiledModel.record`).

Weightings are drawn as the Distill article "Attention and Augmented Recurrent Neural Networks" draws an
NTM's heads: memory location (rows) × time (columns), one picture per head, read and write side by side.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .compiler.module import CompiledModel
from .training.evaluate import seeded_sampling

GRID = re.compile(r"grid(\d+)x(\d+)")  # the time axis of a conv_encoder's grid of annotation vectors


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def inspect(model: CompiledModel, batch: dict[str, torch.Tensor], out: Path, task=None) -> list[Path]:
    """Run ``model`` on ``batch`` (one example) and write the pictures and the raw values into ``out``.
    ``task`` (optional) names tokens: a task with ``vocab()`` labels alignment pictures with its symbols."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {k: v for k, v in batch.items() if k in model.ir.inputs}
    model.eval()
    with torch.no_grad():
        outputs, records = model.record(inputs)  # a decoder runs free here: it never sees the target
    predictions = model.predict(outputs)
    written = [path for path in [_io_picture(model, batch, predictions, out / "io.png")] if path is not None]
    aligned = {k: v[0] for k, v in records.items() if (_layout(model, k) or ("",))[0] == "alignment"}
    heads = {k: v[0] for k, v in records.items() if k.endswith(".weights") and k not in aligned}
    if heads:
        written.append(_weights_picture(heads, out / "attention.png"))
    vocab = task.vocab() if hasattr(task, "vocab") else {}
    if hasattr(task, "position_names"):  # a pointer task: its input positions by what they hold
        vocab = {**vocab, **task.position_names(batch)}
    for oname, o in model.ir.outputs.items():
        t = o.edge.type
        if t is not None and t.layout is not None and t.layout[0] == "positions" and t.time is not None:
            written.append(_pointer_picture(model, oname, outputs[oname][0], batch, predictions, vocab,
                                            out / f"pointer-{oname}.png"))
    for name, weights in aligned.items():
        node = name.rsplit(".", 1)[0]
        image = _image_under(model, name)
        if image is not None:  # attention over a conv grid: drawn over the image, as Xu et al. do
            written.append(_image_attention_picture(model, name, weights, batch[image][0], predictions, vocab,
                                                    out / f"attention-over-image-{node}.png"))
        else:
            written.append(_alignment_picture(model, name, weights, batch, predictions, vocab,
                                              out / f"alignment-{node}.png"))
    for node in model.ir.nodes():
        if node.is_scope and node.kind == "program" and f"{node.dotted}.op" in records:
            written.append(_program_picture(node, records, batch, task, out / f"program-{node.dotted}.png"))
    for dotted in model.ir.ponders:
        if f"{dotted}.steps" in records:
            written.append(_ponder_picture(model, dotted, records, out / f"ponder-{dotted}.png"))
    for name, value in records.items():
        layout = _layout(model, name)
        if layout is not None and layout[0] == "memory":
            written.append(_memory_picture(name, value[0], layout, out / f"{name}.png"))
    tensors = {f"record.{k}": v[0].contiguous() for k, v in records.items()}
    tensors.update({f"output.{k}": v[0].contiguous() for k, v in predictions.items()})
    tensors.update({f"batch.{k}": v[0].float().contiguous() for k, v in batch.items()})
    save_file(tensors, str(out / "record.safetensors"))
    written.append(out / "record.safetensors")
    return written


def _node(model: CompiledModel, name: str):
    """The component node a recorded port (``"dec.att.weights"``) belongs to."""
    dotted = name.rsplit(".", 1)[0]
    return next((n for n in model.ir.nodes() if not n.is_scope and n.dotted == dotted), None)


def _layout(model: CompiledModel, name: str):
    node = _node(model, name)
    t = node.types.get(name.rsplit(".", 1)[1]) if node is not None else None
    return t.layout if t is not None else None


def _image_under(model: CompiledModel, name: str) -> str | None:
    """The image input under an attention's keys when they are a conv grid (time axis ``grid{h}x{w}``),
    found by walking the keys' sources upstream; None otherwise."""
    layout = _layout(model, name)
    if layout is None or len(layout) < 2 or not GRID.fullmatch(str(layout[1])):
        return None
    node = _node(model, name)
    frontier, seen = [e.src for e in node.inputs.get(node.cls.mask_for or "keys", [])], set()
    while frontier:
        src = frontier.pop()
        if src in seen:
            continue
        seen.add(src)
        t = src.types.get("out") if src.is_input else None
        if t is not None and t.layout is not None and t.layout[0] == "image":
            return src.name
        frontier += [e.src for edges in src.inputs.values() for e in edges if not e.prev]
    return None


def _decoded(model: CompiledModel, node, predictions, vocab, steps: int) -> tuple[list[str], int]:
    """The names of the tokens a decoder wrote (its predictions, up to its first eos) for an attention in
    its body, and how many there are; step numbers when the attention is not in a decoder."""
    dec = node.scope.frame.owner
    output = next((o for o in model.ir.outputs.values() if dec in o.edge.into), None) \
        if dec is not None and dec.kind == "decode" else None
    if output is None:
        return [str(i) for i in range(steps)], steps
    return _answer(model, dec, predictions[output.name][0].tolist(), vocab)


def _answer(model: CompiledModel, dec, ids: list[int], vocab) -> tuple[list[str], int]:
    """A decoder's answer up to its first eos: the names of its tokens (for a pointer, of the positions it
    chose), and how many there are."""
    n = next((i + 1 for i, t in enumerate(ids) if t == dec.p.eos), len(ids))
    layout = model.ir.targets[dec.p.target].layout
    names = vocab.get(layout[1] if layout is not None and layout[0] == "positions" else dec.p.target)
    return [names[i] if names and i < len(names) else str(i) for i in ids[:n]], n


def _image_attention_picture(model: CompiledModel, name: str, weights: torch.Tensor, image: torch.Tensor,
                             predictions, vocab, path: Path) -> Path:
    """Show, attend and tell's figure: the image once, then once per emitted token with the attention over
    the conv grid upsampled (bilinear) to the image and laid over it."""
    plt = _plt()
    node = _node(model, name)
    h, w = (int(g) for g in GRID.fullmatch(str(_layout(model, name)[1])).groups())
    tokens, n = _decoded(model, node, predictions, vocab, weights.shape[0])
    grey = image.float().mean(0)  # (H, W)
    maps = torch.nn.functional.interpolate(weights[:n].float().reshape(n, 1, h, w), size=grey.shape,
                                           mode="bilinear", align_corners=False)[:, 0]
    width = 6.0
    row = width * grey.shape[0] / grey.shape[1] + 0.35
    fig, axes = plt.subplots(n + 1, 1, figsize=(width, 0.3 + row * (n + 1)), squeeze=False)
    axes[0, 0].imshow(grey.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0, 0].set_title("input", fontsize=9, loc="left")
    for i in range(n):
        ax = axes[i + 1, 0]
        ax.imshow(grey.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        top = float(maps[i].max()) or 1.0
        ax.imshow(maps[i].numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=top, interpolation="bilinear")
        ax.set_title(f"step {i + 1}: wrote {tokens[i]!r} (peak weight {float(weights[i].max()):.2f})", fontsize=9,
                     loc="left")
    for ax in axes[:, 0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name.rsplit('.', 1)[0]}: attention over a {h}×{w} grid", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _io_picture(model: CompiledModel, batch, predictions, path: Path) -> Path | None:
    plt = _plt()
    panels = []
    for name in model.ir.inputs:
        x = batch[name][0]
        if x.dim() == 2:
            panels.append((f"input {name}", x))
    for name, o in model.ir.outputs.items():
        pred = predictions[name][0]
        if pred.dim() == 2 and o.edge.type.layout is None:  # not an alignment (a penalty's) or a logp
            panels.append((f"output {name}", pred))
        if o.target and o.target in batch and batch[o.target][0].dim() == 2:
            target = batch[o.target][0]
            mask = batch.get(f"{o.target}.mask")
            if mask is not None:
                target = target * mask[0][:, None]
            panels.append((f"target {o.target}", target))
    if not panels:  # token sequences: the alignment pictures label them instead
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.2 + 1.1 * len(panels)), squeeze=False)
    for ax, (title, values) in zip(axes[:, 0], panels):
        ax.imshow(values.T.float().numpy(), aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("channel", fontsize=8)
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ponder_picture(model: CompiledModel, dotted: str, records, path: Path) -> Path:
    """A halting scope's ponder steps N per input step (and ACT's cost ρ = N + R), for the first example."""
    plt = _plt()
    scope = next(n for n in model.ir.nodes() if n.dotted == dotted)
    steps = records[f"{dotted}.steps"][0].reshape(-1).float()  # (T,) or (1,)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(steps) + 2), 3.0))
    where = torch.arange(1, len(steps) + 1)
    ax.bar(where.tolist(), steps.tolist(), color="#e8a0b0", label="N (ponder steps)")
    if scope.kind == "act":
        ax.plot(where.tolist(), records[f"{dotted}.cost"][0].reshape(-1).float().tolist(), "k.", label="ρ = N + R")
    ax.set_xlabel("input step")
    ax.set_ylabel("ponder steps")
    ax.set_title(f"{dotted} ({scope.kind}{', sampled halting' if scope.kind == 'pondernet' else ''})", fontsize=10)
    ax.set_xticks(where.tolist())
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ponder_by_difficulty(model: CompiledModel, task, out: Path, seed: int, examples: int = 1024,
                         batch: int = 128) -> list[Path]:
    """Ponder steps against how hard each input step is, over ``examples`` fresh examples of ``task`` (drawn
    with ``seed``): the mean N per value of the task's ``difficulty`` (parity: non-zero entries, as Graves
    2016 Fig. 5; logic: gates; addition: digits), with the spread (± one standard deviation) and the range.
    One picture and one CSV (difficulty, input steps, mean, std, min, max) per halting scope; nothing when the
    model has no halting scope or the task no ``difficulty``. PonderNet halts by sampling here, as in eval."""
    if not model.ir.ponders or not hasattr(task, "difficulty"):
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    keys = set(model.ir.inputs) | {f"{n}.mask" for n in model.ir.inputs}
    level, steps = [], {dotted: [] for dotted in model.ir.ponders}
    model.eval()
    label = ""
    with torch.no_grad(), seeded_sampling(seed):
        for start in range(0, examples, batch):
            data = task.sample(min(batch, examples - start), gen)
            outputs = model({k: v for k, v in data.items() if k in keys})
            label, values, valid = task.difficulty(data)
            valid = valid.reshape(values.shape[0], -1).bool()
            level.append(values.reshape(values.shape[0], -1)[valid])
            for dotted in steps:
                n = outputs[f"ponder:{dotted}"].reshape(values.shape[0], -1)
                steps[dotted].append(n[valid].float())
    level_all = torch.cat(level)
    written = []
    for dotted, parts in steps.items():
        n_all = torch.cat(parts)
        rows = []
        for value in sorted(set(level_all.tolist())):
            sel = n_all[level_all == value]
            rows.append((value, len(sel), float(sel.mean()), float(sel.std()) if len(sel) > 1 else 0.0,
                         float(sel.min()), float(sel.max())))
        name = f"ponder-vs-difficulty-{dotted}"
        csv = out / f"{name}.csv"
        csv.write_text("difficulty,input_steps,mean_ponder,std,min,max\n" + "".join(
            f"{v},{k},{m:.4f},{sd:.4f},{lo:g},{hi:g}\n" for v, k, m, sd, lo, hi in rows), encoding="utf-8")
        written += [_difficulty_picture(model, dotted, label, rows, examples, out / f"{name}.png"), csv]
    return written


def _difficulty_picture(model: CompiledModel, dotted: str, label: str, rows, examples: int, path: Path) -> Path:
    plt = _plt()
    scope = next(n for n in model.ir.nodes() if n.dotted == dotted)
    x = [r[0] for r in rows]
    mean, sd, low, high = torch.tensor([r[2:6] for r in rows]).T  # the CSV's columns
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.fill_between(x, low.tolist(), high.tolist(), color="#f3d3dc", label="range")
    ax.fill_between(x, torch.maximum(mean - sd, low).tolist(), torch.minimum(mean + sd, high).tolist(),
                    color="#e8a0b0", label="± 1 s.d. (within the range)")
    ax.plot(x, mean.tolist(), "k.-", label="mean N")
    ax.set_xlabel(label)
    ax.set_ylabel("ponder steps N")
    halting = ", sampled halting" if scope.kind == "pondernet" else ""
    ax.set_title(f"{dotted} ({scope.kind}{halting}): ponder steps by {label}, {examples} fresh examples",
                 fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def induced_program(prog, records, example: int = 0) -> list[str]:
    """The program a ``program`` scope ran for one example, step by step, as text: its most probable op with its
    most probable column (A, B, ...) and pivot where the op takes them, e.g. ["greater(B, 35)", "count"]."""
    from .components.ops import library_ops

    ops = library_ops(prog.p.library)
    steps = []
    for t in range(records[f"{prog.dotted}.op"].shape[1]):
        chosen = ops[int(records[f"{prog.dotted}.op"][example, t].argmax())]
        args = []
        if "column" in chosen.takes:
            args.append(chr(ord("A") + int(records[f"{prog.dotted}.column"][example, t].argmax())))
        if "pivot" in chosen.takes:
            args.append(f"{float(records[f'{prog.dotted}.pivot'][example, t].detach()):.4g}")
        steps.append(chosen.name + (f"({', '.join(args)})" if args else ""))
    return steps


def _program_picture(prog, records, batch, task, path: Path) -> Path:
    """A program's choices for the first example: its op distribution per step (and its column distribution),
    titled with the question, the induced program (most probable op, column and pivot per step) and, where the
    task knows it, the program that answers the question."""
    from .components.ops import library_ops

    plt = _plt()
    names = [o.name for o in library_ops(prog.p.library)]
    op_p = records[f"{prog.dotted}.op"][0].float()  # (T, n_ops)
    col_p = records.get(f"{prog.dotted}.column")
    panels = [("op", op_p, names)]
    if col_p is not None:
        col_p = col_p[0].float()
        panels.append(("column", col_p, [chr(ord("A") + i) for i in range(col_p.shape[1])]))
    steps = op_p.shape[0]
    widths = [max(2.5, 0.45 * len(labels) + 1.0) for _, _, labels in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths) + 0.8, 1.0 + 0.5 * steps + 1.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (what, p, labels) in zip(axes[0], panels):
        ax.imshow(p.numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=45 if what == "op" else 0, ha="right" if what == "op" else "center",
                      fontsize=8)
        ax.set_yticks(range(steps), [f"step {t + 1}" for t in range(steps)], fontsize=8)
        ax.set_title(f"{what} distribution", fontsize=9)
        for t in range(steps):
            for i in range(len(labels)):
                if float(p[t, i]) >= 0.1:
                    ax.text(i, t, f"{float(p[t, i]):.2f}", ha="center", va="center", fontsize=6,
                            color="white" if float(p[t, i]) > 0.6 else "black")
    lines = []
    if hasattr(task, "words"):
        lines.append("question: " + " ".join(task.words(batch)))
    lines.append("induced: " + " → ".join(induced_program(prog, records)))
    if hasattr(task, "program"):
        lines.append("answers it: " + " → ".join(task.program(batch)))
    fig.suptitle("\n".join(lines), fontsize=8, x=0.02, ha="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _weights_picture(heads: dict[str, torch.Tensor], path: Path) -> Path:
    plt = _plt()
    names = sorted(heads, key=lambda n: (".read" in n, n))  # writes first, then reads (the Distill order)
    top = max(float(w.max()) for w in heads.values()) or 1.0  # one colour scale for all heads
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 4.2), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        w = heads[name]  # (T, N)
        used = int((w.max(0).values > 1e-3).nonzero().max()) + 1 if (w.max(0).values > 1e-3).any() else w.shape[1]
        rows = min(w.shape[1], max(used + 4, 16))
        image = ax.imshow(w[:, :rows].T.numpy(), aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=top)
        ax.set_title(name.rsplit(".", 1)[0], fontsize=9)
        ax.set_xlabel("time step")
        if i == 0:
            ax.set_ylabel(f"memory location (first {rows} of {w.shape[1]})")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="weight")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _memory_picture(name: str, value: torch.Tensor, layout, path: Path) -> Path:
    """The memory after the last step: locations × width."""
    plt = _plt()
    n, m = layout[1], layout[2]
    final = value[-1].reshape(n, m)
    used = int((final.abs().sum(1) > 1e-3).nonzero().max()) + 1 if (final.abs().sum(1) > 1e-3).any() else n
    rows = min(n, max(used + 4, 16))
    fig, ax = plt.subplots(figsize=(4, 4.5))
    image = ax.imshow(final[:rows].numpy(), aspect="auto", cmap="coolwarm", interpolation="nearest")
    ax.set_title(f"{name.rsplit('.', 1)[0]} after the last step", fontsize=9)
    ax.set_xlabel("width")
    ax.set_ylabel(f"location (first {rows} of {n})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pointer_picture(model: CompiledModel, name: str, scores: torch.Tensor, batch, predictions,
                     vocab: dict[str, list[str]], path: Path) -> Path:
    """A pointer's choices: output steps (rows, labelled with the position chosen) × input positions
    (columns), the softmax of the scores the answer was read from (after the decoder's constraint), white = 1."""
    plt = _plt()
    axis = model.ir.targets[model.ir.outputs[name].target].layout[1]
    s_mask = batch.get(f"{axis}.mask")
    n_src = int(s_mask[0].sum()) if s_mask is not None else scores.shape[-1]
    dec = next(s for s in model.ir.outputs[name].edge.into if s.kind == "decode")
    chosen, n_out = _answer(model, dec, predictions[name][0].tolist(), vocab)
    names = vocab.get(axis) or [str(i) for i in range(n_src)]
    p = torch.softmax(scores[:n_out, :n_src].float(), -1).numpy()
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * n_src, 1.2 + 0.32 * n_out))
    ax.imshow(p, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_xticks(range(n_src), names[:n_src], fontsize=7, rotation=90)
    ax.set_yticks(range(n_out), chosen, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_xlabel(f"positions of {axis}", fontsize=9)
    ax.set_ylabel("chosen (greedy)", fontsize=9)
    ax.set_title(f"{name}: p(position) per step", fontsize=9, pad=40)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _alignment_picture(model: CompiledModel, name: str, weights: torch.Tensor, batch, predictions,
                       vocab: dict[str, list[str]], path: Path) -> Path:
    """A decoder's attention as Bahdanau et al. (2015) draw it: output tokens (rows) × source positions
    (columns), white = 1. Axes are labelled with the task's symbols when it names them."""
    plt = _plt()
    node = _node(model, name)
    keys = node.inputs[node.cls.mask_for][0].type.time if node.cls.mask_for else None  # an input's time axis
    src = batch.get(keys)[0].tolist() if keys in batch else list(range(weights.shape[1]))
    s_mask = batch.get(f"{keys}.mask")
    n_src = int(s_mask[0].sum()) if s_mask is not None else len(src)
    out_names, n_out = _decoded(model, node, predictions, vocab, weights.shape[0])
    w = weights[:n_out, :n_src].float().numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.32 * n_src, 1.2 + 0.32 * n_out))
    ax.imshow(w, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    src_names = vocab.get(keys)
    if keys in vocab and src_names and batch.get(keys) is not None and batch[keys].is_floating_point():
        src = list(range(n_src))  # a pointer task names its positions (points), not token ids
    ax.set_xticks(range(n_src), [src_names[i] if src_names else str(i) for i in src[:n_src]], fontsize=8)
    ax.set_yticks(range(n_out), out_names, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xlabel(f"source ({keys})", fontsize=9)
    ax.set_ylabel("output (greedy)", fontsize=9)
    ax.set_title(name.rsplit(".", 1)[0], fontsize=9, pad=22)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
