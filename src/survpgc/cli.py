"""Command-line interface: thin typer glue over library functions.

Only typer is imported at module level; every command imports what it needs inside its body so that
``survpgc --help`` stays instant.
"""

from __future__ import annotations

import logging
import sys

import typer

app = typer.Typer(
    name="survpgc",
    help=(
        "survpgc: multimodal cancer survival prediction (SurvPGC and baselines).\n\n"
        "Convention everywhere: time in months > 0, event True = death observed, risk higher = worse."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def version() -> None:
    """Print the survpgc version."""
    from survpgc import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``survpgc`` console script; turns SurvpgcError into a one-line message."""
    from survpgc.errors import SurvpgcError

    try:
        app()
    except SurvpgcError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
