"""The ``attngraph`` command: check, show, list, schema, summary and render specs.

Every verb that reads a spec reports all of its problems as ``FILE:LINE:COL: key.path: message (hint)``
and exits with status 2; no input, however malformed, produces a Python traceback.
"""
from __future__ import annotations

import functools
import json
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
    """``SPEC`` plus ``--set KEY=VALUE`` (repeatable) and ``--import MODULE`` (repeatable)."""
    fn = click.option("--import", "imports", multiple=True, metavar="MODULE",
                      help="Import a Python module that registers extra components (repeatable).")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a value, e.g. --set model.ctrl.size=256 or --set model.ctrl.in[1]=x "
                           "(repeatable; an unknown key is an error).")(fn)
    return click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))(fn)


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
    """Validate SPEC: every error at once, as FILE:LINE:COL: key.path: message (hint).

    Exit status: 0 valid (warnings allowed), 2 errors in the spec.

    \b
    Examples:
      attngraph check spec.yaml
      attngraph check spec.yaml --set model.ctrl.size=256
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

    \b
    Example:
      attngraph show spec.yaml --set model.ctrl.layers=2
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

    \b
    Example:
      attngraph summary spec.yaml
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

    \b
    Examples:
      attngraph render spec.yaml -o model.svg
      attngraph render spec.yaml -o model.png --rankdir TB
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
