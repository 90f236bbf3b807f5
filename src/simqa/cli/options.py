"""The options several commands share, spelled once."""

from __future__ import annotations

from typing import Annotated

import typer

IndexOpt = Annotated[
    str, typer.Option("--index", "-i", help="Index name (a folder under ./indexes) or path.")
]

KOpt = Annotated[int, typer.Option("-k", "--top", help="How many similar consultations.")]

FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output: text (Similar Q&A), json, markdown or html.")
]

DeptOpt = Annotated[str | None, typer.Option(help="Only consultations of this department.")]

SourceOpt = Annotated[str | None, typer.Option(help="Only consultations from this source.")]

TagOpt = Annotated[str | None, typer.Option(help="Only consultations with this topic tag.")]

SinceOpt = Annotated[
    str | None, typer.Option(help="Only consultations asked on or after this date (2013-02-10).")
]

UntilOpt = Annotated[
    str | None, typer.Option(help="Only consultations asked on or before this date.")
]

WaitOpt = Annotated[
    float,
    typer.Option(help="Seconds to wait for another writer of the same index before giving up."),
]

EncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder", help="onnx (int8, faster) or torch; default: what the index was built with."
    ),
]

VerifyOpt = Annotated[
    str,
    typer.Option(
        "--verify",
        help="flag: mark each hit same_question true/false with a probability (JSON); drop: "
        "leave out hits judged a different question; off. Needs a verifier for the index's "
        "model (simqa adapt fits one).",
    ),
]

MinScoreOpt = Annotated[
    float | None,
    typer.Option(
        help="Leave out hits below this cosine similarity (default: the index's calibrated "
        "threshold, see simqa info; -1 keeps every hit)."
    ),
]



def echo(text: str) -> None:
    """Print a command's result on stdout (messages go to stderr)."""
    typer.echo(text)
