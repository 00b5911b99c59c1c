"""The `keel` command line."""

from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import render

app = typer.Typer(
    help="Keel renders Python services (FastAPI, Celery on RabbitMQ, a PostgreSQL database "
    "per domain) that start in the right order. Every command also works as plain copier.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"keel {version('keel')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Keel: start every Python service the same, trustworthy way."""


@app.command()
def new(
    destination: Annotated[Path, typer.Argument(help="Directory to create the service in.")],
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Use the default answer to every question.")
    ] = False,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            metavar="KEY=VALUE",
            help="Answer a question (same keys as copier.yml), e.g. -d domains='[orders]'.",
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Path or URL of the Keel template (default: this installation's)."),
    ] = None,
    vcs_ref: Annotated[
        str | None, typer.Option(help="Template git ref (tag, branch, commit) to render.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Render into a directory that is not empty.")
    ] = False,
) -> None:
    """Render a new service into DESTINATION (same as `copier copy KEEL DESTINATION`).

    Answers are validated before anything is written: on a bad answer nothing is created.
    """
    try:
        answers = render.parse_data(data or [])
        with err.status("Rendering…"):
            rendered = render.new(
                destination,
                template=template,
                data=answers,
                defaults=defaults,
                vcs_ref=vcs_ref,
                force=force,
            )
    except render.RenderError as error:
        err.print(f"[bold red]keel new:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"[green]Rendered[/] {rendered.files} files into {rendered.destination}")
    out.print(
        "Next: cd into it, [bold]git init && git add -A && git commit -m 'Start from Keel'[/], "
        "then follow its README (docker compose up --build, or run natively)."
    )
