"""The ``attngraph`` command: check, show, list, schema, summary and render specs.

Every verb that reads a spec reports all of its problems as ``FILE:LINE:COL: key.path: message (hint)``
and exits with status 2; no input, however malformed, produces a Python traceback.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

EXIT_SPEC_ERROR = 2
EXIT_INTERNAL = 3


def _fail_internal(err: BaseException) -> None:
    click.echo(f"attngraph: internal error: {type(err).__name__}: {err}", err=True)
    click.echo("this is a bug in attngraph, not in your spec: please report it with the spec that caused it",
               err=True)
    sys.exit(EXIT_INTERNAL)


def guarded(fn: Callable) -> Callable:
    """Turn any unexpected exception into a one-line report (never a traceback) with exit status 3."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as err:  # noqa: BLE001 - the last line of defence of the CLI
            _fail_internal(err)

    return wrapper


def spec_options(fn: Callable) -> Callable:
    """``SPEC`` (a spec file or the NAME of a gallery entry) plus ``--set KEY=VALUE`` (repeatable) and
    ``--import MODULE`` (repeatable)."""
    fn = click.option("--import", "imports", multiple=True, metavar="MODULE",
                      help="Import a Python module that registers extra components (repeatable).")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a value, e.g. --set model.ctrl.size=256 or --set model.ctrl.in[1]=x "
                           "(repeatable; an unknown key is an error).")(fn)
    return click.argument("spec", callback=_spec_path)(fn)


def gallery_spec(spec: str) -> Path | None:
    """gallery/SPEC/spec.yaml when SPEC is a bare name (no '/') of a gallery entry, else None (the lookup of
    :func:`attngraph.api.spec_file`, which ``attngraph.load`` shares)."""
    from attngraph.api import spec_file

    found = spec_file(spec)
    return None if found == Path(spec) else found


def _spec_path(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """SPEC as given when it is a file (or names no gallery entry: reading it then reports what is wrong with the
    path), else the spec of the gallery entry it names, as :func:`resolve_spec` reads it."""
    path = Path(value)
    return path if path.is_file() else gallery_spec(value) or path


def load_or_exit(spec: Path, overrides: tuple[str, ...], imports: tuple[str, ...], show_warnings: bool = True):
    """Load a spec or print every diagnostic and exit with status 2."""
    import attngraph

    try:
        attngraph.load_plugins(list(imports))
    except ImportError as err:
        click.echo(f"attngraph: cannot import '{err.name or err}': {err}", err=True)
        sys.exit(EXIT_SPEC_ERROR)
    result, report = attngraph.check(spec, list(overrides))
    for diag in report:
        if diag.severity == "error" or show_warnings:
            click.echo(str(diag), err=True)
    if result is None:
        errors = sum(d.severity == "error" for d in report)
        click.echo(f"{spec}: {errors} error{'s' if errors != 1 else ''}", err=True)
        sys.exit(EXIT_SPEC_ERROR)
    return result


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="attngraph")
def main() -> None:
    """attngraph: attention-augmented neural networks declared as YAML graphs, compiled to PyTorch.

    \b
    Examples:
      attngraph check specs/examples/loop_feedback.yaml
      attngraph render specs/examples/loop_feedback.yaml -o model.svg
      attngraph list lstm
    """


@main.command()
@spec_options
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the spec is valid.")
@guarded
def check(spec: Path, overrides: tuple[str, ...], imports: tuple[str, ...], quiet: bool) -> None:
    """Validate SPEC (a spec file, or the NAME of a gallery model): every error at once, as
    FILE:LINE:COL: key.path: message (hint).

    Exit status: 0 valid (warnings allowed), 2 errors in the spec.

    \b
    Examples:
      attngraph check spec.yaml
      attngraph check spec.yaml --set model.ctrl.size=256
      attngraph check act-logic-5
    """
    result = load_or_exit(spec, overrides, imports)
    if not quiet:
        nodes = len(result.ir.nodes())
        warnings = len(result.warnings)
        click.echo(f"{spec}: ok ({nodes} node{'s' if nodes != 1 else ''}"
                   f"{f', {warnings} warning' + ('s' if warnings != 1 else '') if warnings else ''})")


@main.command()
@spec_options
@guarded
def show(spec: Path, overrides: tuple[str, ...], imports: tuple[str, ...]) -> None:
    """Print SPEC as attngraph resolved it: includes expanded, overrides applied, all defaults filled in.

    SPEC is a spec file, or the NAME of a gallery model.

    \b
    Examples:
      attngraph show spec.yaml --set model.ctrl.layers=2
      attngraph show ntm-copy
    """
    import yaml

    from attngraph.resolved import resolved

    result = load_or_exit(spec, overrides, imports, show_warnings=False)
    click.echo(yaml.safe_dump(resolved(result), sort_keys=False, default_flow_style=None, width=100), nl=False)


@main.command(name="list")
@click.argument("kind", required=False)
@click.option("--import", "imports", multiple=True, metavar="MODULE", help="Import a plug-in module first.")
@guarded
def list_kinds(kind: str | None, imports: tuple[str, ...]) -> None:
    """List every component and scope kind with its parameters, types, defaults and docs (or one KIND).

    \b
    Examples:
      attngraph list
      attngraph list lstm
    """
    import attngraph
    from attngraph.spec.diagnostics import did_you_mean
    from attngraph_cli.listing import describe_all, describe_kind

    attngraph.load_plugins(list(imports))
    if kind is None:
        click.echo(describe_all())
        return
    text = describe_kind(kind)
    if text is None:
        from attngraph.components import REGISTRY
        from attngraph.scopes import SCOPES
        from attngraph.tasks import TASKS

        click.echo(f"attngraph: unknown kind '{kind}' ({did_you_mean(kind, [*REGISTRY, *SCOPES, *TASKS])})", err=True)
        sys.exit(EXIT_SPEC_ERROR)
    click.echo(text)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file instead of stdout.")
@guarded
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the spec language (for editors).

    \b
    With the YAML language server (VS Code's YAML extension, Neovim's yamlls), save it and put
    this line first in a spec for completion and validation as you type:
      # yaml-language-server: $schema=./attngraph.schema.json
    Example:
      attngraph schema -o attngraph.schema.json
    """
    import attngraph
    from attngraph.schema import json_schema

    attngraph.load_plugins()
    text = json.dumps(json_schema(), indent=2)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")
        click.echo(f"wrote {output}", err=True)


@main.command()
@spec_options
@guarded
def summary(spec: Path, overrides: tuple[str, ...], imports: tuple[str, ...]) -> None:
    """Per-node input and output shapes and parameter counts of SPEC, and the total.

    Shapes: 9 is a (B, 9) vector per example, seq[x]×9 a (B, T, 9) sequence on x's time axis,
    index<100> token indices below 100.

    SPEC is a spec file, or the NAME of a gallery model.

    \b
    Examples:
      attngraph summary spec.yaml
      attngraph summary ntm-copy
    """
    import attngraph
    from attngraph.summary import format_table

    result = load_or_exit(spec, overrides, imports, show_warnings=False)
    click.echo(format_table(result, attngraph.build(result)))


@main.command()
@spec_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; the format follows the suffix: .svg, .png, .pdf or .dot.")
@click.option("--rankdir", type=click.Choice(["LR", "TB", "RL", "BT"]), default="LR", show_default=True,
              help="Direction of the data flow in the diagram.")
@guarded
def render(spec: Path, overrides: tuple[str, ...], imports: tuple[str, ...], output: Path, rankdir: str) -> None:
    """Draw SPEC as an architecture diagram (from the spec, not traced).

    Components are coloured by family, scopes drawn as clusters, recurrent prev() edges dashed and
    labelled t−1, and edges labelled with their inferred sizes. Without Graphviz's `dot` program the
    .dot source is still written and the exit status is 1.

    SPEC is a spec file, or the NAME of a gallery model.

    \b
    Examples:
      attngraph render spec.yaml -o model.svg
      attngraph render spec.yaml -o model.png --rankdir TB
      attngraph render ntm-act-copy -o ntm-act-copy.svg
    """
    from attngraph.render import DotNotFound
    from attngraph.render import render as draw

    result = load_or_exit(spec, overrides, imports, show_warnings=False)
    try:
        path = draw(result, output, rankdir=rankdir)
    except DotNotFound as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--output") from err
    click.echo(f"wrote {path}")




def named_spec_options(fn: Callable) -> Callable:
    """``SPEC`` (a spec file or a gallery NAME) plus ``--set`` and ``--import`` (both repeatable)."""
    fn = click.option("--import", "imports", multiple=True, metavar="MODULE",
                      help="Import a plug-in module first (repeatable).")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a value, e.g. --set train.lr=3e-4 (repeatable).")(fn)
    return click.argument("spec")(fn)


checkpoint_option = click.option(
    "--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
    help="Weights [default for a gallery NAME: gallery/NAME/checkpoint.safetensors; for a run directory: its "
         "checkpoints/best.safetensors].")


def resolve_spec(spec: str) -> tuple[Path, str | None]:
    """SPEC as given when it is a file, else gallery/SPEC/spec.yaml (returns the path and the gallery name)."""
    from attngraph.gallery import gallery_root

    path = Path(spec)
    if path.is_file():
        return path, None
    candidate = gallery_spec(spec)
    if candidate is not None:
        return candidate, spec
    known = sorted(p.parent.name for p in gallery_root().glob("*/spec.yaml"))
    click.echo(f"attngraph: '{spec}' is neither a spec file nor a gallery model "
               f"(gallery: {', '.join(known) if known else 'none yet'})", err=True)
    sys.exit(EXIT_SPEC_ERROR)


@main.command()
@named_spec_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory [default: runs/<spec name>-<YYYYmmdd-HHMMSS>; with --resume the newest run of "
                   "exactly this spec]. It must be empty unless --resume or --overwrite.")
@click.option("--seed", type=click.IntRange(0), help="Seed, instead of train.seed.")
@click.option("--resume", is_flag=True, help="Continue from the run directory's checkpoints/last.safetensors (a run "
              "of the same spec; train.steps and other run-length settings may change).")
@click.option("--overwrite", is_flag=True, help="Start afresh in a --out that holds an earlier run, deleting it.")
@click.option("--allow-spec-change", is_flag=True, help="With --resume: continue a run trained from another spec.")
@click.option("--init", "init_from", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="CHECKPOINT",
              help="Start from the weights of CHECKPOINT (a run's or a gallery entry's .safetensors; same model): a "
                   "fine-tune or the next stage of a curriculum. The optimiser and the step count start afresh.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch [default: 1: for the gallery's models "
              "2 threads measured at most 30% faster on an idle machine and 3-4x slower with another process busy; "
              "README, Threads].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no progress messages.")
@click.option("--progress-every", type=click.FloatRange(0.1), default=10.0, show_default=True, metavar="SECONDS",
              help="Where no bar can be drawn (a pipe, a log file, a terminal without a width): a progress line "
                   "this often.")
@click.option("--nproc", type=click.IntRange(1), metavar="N",
              help="Data-parallel training in N processes on this machine (starts torchrun; train.batch is the "
                   "global batch, split evenly).")
@guarded
def train(spec: str, overrides: tuple[str, ...], imports: tuple[str, ...], out: Path | None, seed: int | None,
          resume: bool, overwrite: bool, allow_spec_change: bool, init_from: Path | None, device: str,
          threads: int | None, quiet: bool, progress_every: float, nproc: int | None) -> None:
    """Train SPEC (a spec file, or the NAME of a gallery model) on its task: section.

    Writes a run directory: spec.resolved.yaml (every default filled in), overrides.txt,
    versions.json, run.json (command line, seed, threads, git commit and whether the tree was
    dirty), metrics.csv (one row per evaluation), train_loss.csv (every train.log_every steps),
    learning_curve.png, tensorboard/ and checkpoints/{last,best}.safetensors (each one file, replaced
    atomically). One process at a time per run directory. Ctrl-C or SIGTERM saves the last
    checkpoint after the current step (a second one sooner) and stops; --resume continues exactly
    where it stopped. --init starts a new run from another run's weights (recorded in init.json and
    in the checkpoints). Torch uses 1 thread unless --threads (measured: see README, "Threads").

    Exit status: 0 trained (or stop target reached), 1 stopped on a non-finite loss, gradient or
    parameter, or unable to train, 2 errors in the spec, 130/143 stopped by SIGINT/SIGTERM (saved).

    \b
    Examples:
      attngraph train specs/examples/lstm_copy.yaml --set train.steps=2000
      attngraph train spec.yaml --out runs/try1 --seed 3
      attngraph train spec.yaml --out runs/try1 --resume
      attngraph train spec.yaml --out runs/try1 --overwrite       # start runs/try1 afresh
      attngraph train spec.yaml --set train.lr=1e-4 --init runs/try1/checkpoints/best.safetensors
      attngraph train spec.yaml --nproc 2 --out runs/ddp
      torchrun --nproc-per-node 2 -m attngraph train spec.yaml --out runs/ddp
    """

    import torch

    from attngraph.training.distributed import shutdown, world_from_env
    from attngraph.training.rundir import latest_run_dir
    from attngraph.training.trainer import Trainer, TrainingError

    world = world_from_env()
    if nproc is not None and nproc > 1 and not world.distributed:
        sys.exit(_launch(nproc))
    path, _ = resolve_spec(spec)
    result = load_or_exit(path, overrides, imports, show_warnings=world.writer)
    torch.set_num_threads(threads or 1)
    if device == "cuda" and not torch.cuda.is_available():
        click.echo("attngraph: --device cuda, but torch sees no CUDA device", err=True)
        sys.exit(1)
    if resume and out is None:
        out = latest_run_dir(result)
        if out is None:
            click.echo(f"attngraph: --resume: no run of exactly this spec ('{result.name}') under runs/ has a checkpoint; "
                       "name the run with --out", err=True)
            sys.exit(1)
    finished = False
    try:
        done = Trainer(result, out, device=device, quiet=quiet, resume=resume, seed=seed, world=world,
                       init_from=init_from, overwrite=overwrite, allow_spec_change=allow_spec_change,
                       progress_every=progress_every).run()
        finished = True
    except TrainingError as err:
        if world.writer:
            click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    finally:
        shutdown(world, together=finished)
    if not world.writer:
        sys.exit(done.exit_code)
    click.echo(done.message, err=done.exit_code != 0)
    if done.metrics:
        click.echo("  " + ", ".join(f"{k} {v:.4g}" for k, v in done.metrics.items()))
    sys.exit(done.exit_code)


def _launch(nproc: int) -> int:
    """Run this same ``attngraph train`` command under torchrun in ``nproc`` local processes."""
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    # the launcher and its workers start with `python -m`, which would put the working folder first on sys.path:
    # a yaml.py (or torch.py) lying there would run in every worker. -P / PYTHONSAFEPATH (Python 3.11+) keep
    # it out; attngraph itself is found where it is installed.
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    command = [sys.executable, *safe, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "attngraph", *args]
    try:
        return subprocess.call(command, env=dict(os.environ, PYTHONSAFEPATH="1"))
    except KeyboardInterrupt:  # torchrun passes Ctrl-C on to the workers, which save and stop
        return 130


@main.command(name="eval")
@named_spec_options
@checkpoint_option
@click.option("--seed", type=click.IntRange(0), help="Seed of the evaluation data [default: train.seed + 1000].")
@click.option("--batches", type=click.IntRange(1), help="Batches to average over [default: train.eval_batches].")
@click.option("--batch", "batch_size", type=click.IntRange(1), help="Sequences per batch [default: train.batch].")
@click.option("--beam", type=click.IntRange(1), help="Metrics of a decoder's beam search of this width "
              "(default: greedy decoding; the loss is always greedy's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: metric name -> value.")
@guarded
def evaluate(spec: str, overrides: tuple[str, ...], imports: tuple[str, ...], checkpoint: Path | None,
             seed: int | None, batches: int | None, batch_size: int | None, beam: int | None, as_json: bool) -> None:
    """Evaluate a trained model on freshly generated data of SPEC's evaluation task.

    SPEC is a spec file, a gallery NAME, or a run directory (its spec.resolved.yaml, and by default
    its best checkpoint).

    The data is drawn with a seed other than training's (train.seed + 1000 unless --seed), so the
    numbers are on sequences the model has not seen.

    \b
    Examples:
      attngraph eval specs/examples/lstm_copy.yaml --checkpoint runs/try1/checkpoints/best.safetensors
      attngraph eval spec.yaml --checkpoint runs/try1/checkpoints/best.safetensors --json
      attngraph eval attention-dates-bahdanau --beam 5 --json
      attngraph eval runs/try1 --json
    """
    import torch

    from attngraph.training.config import TrainConfig
    from attngraph.training.evaluate import evaluate as run_eval

    model, result = _trained_model(spec, overrides, imports, checkpoint, show_warnings=not as_json)
    section = result.sections["task"]
    cfg: TrainConfig = result.sections.get("train") or TrainConfig()
    gen = torch.Generator().manual_seed(cfg.seed + 1000 if seed is None else seed)
    if beam is not None and not any(n.kind == "decode" for n in model.ir.nodes()):
        raise click.UsageError(f"--beam: model '{model.ir.name}' has no decode scope")
    metrics = run_eval(model, section.eval, batch_size or cfg.batch, batches or cfg.eval_batches, gen, beam=beam)
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            click.echo(f"{name:>20}  {value:.6g}")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print every entry's results.json as one JSON object.")
@click.pass_context
@guarded
def gallery(ctx: click.Context, as_json: bool) -> None:
    """The published models attngraph reproduced: our measured numbers next to the paper's.

    Without a subcommand: one line per entry (from each gallery/NAME/results.json).

    \b
    Examples:
      attngraph gallery
      attngraph gallery show lstm-copy
      attngraph eval lstm-copy --json          # re-check an entry on fresh data
    """
    if ctx.invoked_subcommand is not None:
        return
    from attngraph.gallery import GalleryError, entry_names, load_entry, table

    try:
        entries = [load_entry(name) for name in entry_names()]
    except GalleryError as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({e.name: e.results for e in entries}, indent=1))
        return
    if not entries:
        click.echo("the gallery has no entries yet")
        return
    rows = table(entries)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        click.echo("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            click.echo("  ".join("-" * w for w in widths))
    click.echo("\npaper: the paper's reported value (— where it gives only a curve); ours: measured on fresh data by "
               "'attngraph gallery publish'; details: attngraph gallery show NAME")


@gallery.command(name="show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the entry's results.json.")
@guarded
def gallery_show(name: str, as_json: bool) -> None:
    """Print one entry: the paper's claim, every evaluation, training time and the reproduce command."""
    from attngraph.gallery import GalleryError, load_entry, show

    try:
        entry = load_entry(name)
    except GalleryError as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    click.echo(json.dumps(entry.results, indent=1) if as_json else show(entry))


@gallery.command(name="publish")
@click.argument("run", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("entry", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--no-render", is_flag=True, help="Do not draw model.svg (no Graphviz here).")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the evaluations.")
@guarded
def gallery_publish(run: Path, entry: Path, no_render: bool, threads: int | None) -> None:
    """Turn training run RUN into the evidence of gallery folder ENTRY (which holds spec.yaml and entry.yaml).

    Copies the best checkpoint's weights, metrics.csv and the learning curve, draws model.svg, re-measures
    every evaluation of entry.yaml on fresh data and writes results.json (and the README's results block).

    \b
    Example:
      attngraph gallery publish runs/lstm-copy gallery/lstm-copy
    """
    import torch

    from attngraph.gallery import GalleryError, publish
    from attngraph.render import DotNotFound
    from attngraph.spec.diagnostics import SpecError
    from attngraph.training.checkpoint import CheckpointError

    if threads:
        torch.set_num_threads(threads)
    try:
        publish(run, entry, render=not no_render, say=click.echo)
    except (GalleryError, CheckpointError, DotNotFound, SpecError) as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    click.echo(f"wrote {entry / 'results.json'}")


@gallery.command(name="by-length")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The plot (.png, .svg or .pdf); the counts go to a .csv beside it.")
@click.option("--batches", type=click.IntRange(1), default=32, show_default=True, help="Evaluation batches.")
@click.option("--batch", "batch_size", type=click.IntRange(1), default=64, show_default=True, help="Sequences per batch.")
@click.option("--seed", type=click.IntRange(0), help="Seed of the data [default: train.seed + 1000].")
@guarded
def gallery_by_length(names: tuple[str, ...], out: Path, batches: int, batch_size: int, seed: int | None) -> None:
    """Plot sequence accuracy against source length for entries whose task measures it (e.g. reversal),
    each from its shipped checkpoint, on the same fresh data.

    \b
    Example:
      attngraph gallery by-length reversal-seq2seq reversal-attention -o accuracy_by_length.png
    """
    from attngraph.gallery import GalleryError, by_length

    try:
        by_length(list(names), out, batches=batches, batch=batch_size, seed=seed, say=click.echo)
    except GalleryError as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out} and {out.with_suffix('.csv')}")


@main.command(name="inspect")
@named_spec_options
@checkpoint_option
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the example drawn.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the pictures and record.safetensors.")
@click.option("--examples", type=click.IntRange(1), default=1024, show_default=True,
              help="Fresh examples for the ponder-vs-difficulty plot (halting scopes on parity, logic, addition).")
@guarded
def inspect_cmd(spec: str, overrides: tuple[str, ...], imports: tuple[str, ...], checkpoint: Path | None, seed: int,
                out: Path, examples: int) -> None:
    """Draw what a trained model did on one generated example of its evaluation task.

    SPEC is a spec file, a gallery NAME, or a run directory (its spec.resolved.yaml, and by default
    its best checkpoint).

    Writes io.png (inputs, outputs, targets over time), attention.png (every head's weighting:
    memory location x time, write heads first), one picture per memory (its contents after the
    last step), for a decoder's attention alignment-<node>.png (output tokens x source tokens, the
    decoder running free, labelled with the task's symbols) and record.safetensors with the raw values.
    A halting scope adds ponder-<scope>.png (ponder steps per input step) and, on a task that says how
    hard each input step is (parity, logic, addition), ponder-vs-difficulty-<scope>.png and .csv: the
    mean ponder steps per difficulty over --examples fresh examples drawn with seed --seed + 1.

    \b
    Examples:
      attngraph inspect ntm-copy -o runs/ntm-copy-inspect
      attngraph inspect runs/try1 -o runs/try1/inspect
      attngraph inspect spec.yaml --checkpoint runs/try1/checkpoints/best.safetensors -o pics --set "task.eval.length=[40, 40]"
    """
    import torch

    from attngraph.inspect import inspect as draw
    from attngraph.inspect import ponder_by_difficulty
    from attngraph.training.evaluate import seeded_sampling

    model, result = _trained_model(spec, overrides, imports, checkpoint)
    task = result.sections["task"].eval
    batch = task.sample(1, torch.Generator().manual_seed(seed))
    with seeded_sampling(seed):  # what the model samples itself (PonderNet's halting step) repeats too
        paths = draw(model, batch, out, task)
    for path in paths:
        click.echo(f"wrote {path}")
    for path in ponder_by_difficulty(model, task, out, seed=seed + 1, examples=examples):
        click.echo(f"wrote {path}")


def _trained_model(spec: str, overrides: tuple[str, ...], imports: tuple[str, ...], checkpoint: Path | None,
                   show_warnings: bool = False):
    """The spec's model with the weights of ``checkpoint`` (by default a gallery entry's, or a run directory's best),
    and the loaded spec. ``spec``: a spec file, a gallery NAME, or a run directory (its spec.resolved.yaml)."""
    import attngraph
    from attngraph.gallery import gallery_root
    from attngraph.training.checkpoint import CheckpointError, load_weights

    run = Path(spec)
    if run.is_dir() and (run / "spec.resolved.yaml").is_file():  # a run directory: its spec and best checkpoint
        path, gallery_name = run / "spec.resolved.yaml", None
        checkpoint = checkpoint or run / "checkpoints" / "best.safetensors"
    else:
        path, gallery_name = resolve_spec(spec)
    result = load_or_exit(path, overrides, imports, show_warnings=show_warnings)
    section = result.sections.get("task")
    if section is None:
        click.echo(f"{path}: the spec has no task: section, so there is no data to run it on", err=True)
        sys.exit(EXIT_SPEC_ERROR)
    if checkpoint is None:
        if gallery_name is None:
            raise click.UsageError("give the weights with --checkpoint PATH (only gallery models have a default)")
        checkpoint = gallery_root() / gallery_name / "checkpoint.safetensors"
    model = attngraph.build(result)
    try:
        load_weights(model, checkpoint)
    except CheckpointError as err:
        click.echo(f"attngraph: {err}", err=True)
        sys.exit(1)
    return model, result

