"""attngraph command line (filled in below)."""
import click


@click.group()
def main() -> None:
    """attngraph: attention-augmented networks declared in YAML, compiled to PyTorch."""
