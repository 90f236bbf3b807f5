"""The ``simqa`` command: the Typer app, its global options and the entry point.

Each command group lives in a module of its own (``index_commands``, ``box_commands``,
``learn_commands``, ``eval_command``, ``serve_command``) and only calls the library.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from simqa.cli import box_commands, eval_command, index_commands, learn_commands, serve_command
from simqa.errors import SimqaError

app = typer.Typer(
    help="Similar-question retrieval for medical consultations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _options(
    threads: Annotated[
        int | None, typer.Option(help="Threads for the model and the index (default: all cores).")
    ] = None,
) -> None:
    """Similar-question retrieval for medical consultations."""
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter("must be 1 or more", param_hint="--threads")
        os.environ["SIMQA_THREADS"] = str(threads)



for command in (
    index_commands.build, box_commands.query, box_commands.similar, box_commands.duplicates,
    index_commands.info, index_commands.delete, index_commands.compact,
    learn_commands.calibrate, serve_command.serve, learn_commands.adapt,
):
    app.command()(command)
app.command("eval")(eval_command.eval_command)
app.command("tune")(learn_commands.tune_command)

#: the command runs offline: models come from disk, never from the Hugging Face hub
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1. Sets the
    offline variables for this process (the library itself changes no environment)."""
    for name, value in OFFLINE.items():
        os.environ.setdefault(name, value)
    try:
        app()
    except SimqaError as exc:
        typer.echo(f"simqa: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("simqa: interrupted; the index is unchanged", err=True)
        sys.exit(130)

