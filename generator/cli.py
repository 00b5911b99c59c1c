"""The `keel` command line."""

import json
import shlex
from contextlib import nullcontext
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from . import update as updating

from . import matrix

app = typer.Typer(
    help="Keel renders Python services (FastAPI, Celery on RabbitMQ, a PostgreSQL database "
    "per domain) that start in the right order. Every command also works as plain copier.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
# `--data KEY=VALUE`, as copier takes it: for `new` an answer, for `update` a changed one.
Answers = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        metavar="KEY=VALUE",
        help="Answer a question by its copier.yml key, e.g. -d domains='[orders, billing]'.",
    ),
]
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
    data: Answers = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Path or URL of the Keel template (default: $KEEL_TEMPLATE, else the checkout "
            "Keel runs from, else Keel's repository at the installed version's tag)."
        ),
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
    from . import render  # copier is slow to import; `keel check` never needs it

    try:
        answers = render.parse_data(data or [])
        # Without --defaults copier asks on this terminal, and a spinner would draw over the
        # questions and the default answers they show.
        progress = err.status("Rendering…") if defaults else nullcontext()
        with progress:
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


@app.command()
def update(
    path: Annotated[Path, typer.Argument(help="The service to update (a git repository).")] = Path(
        "."
    ),
    to: Annotated[
        str | None,
        typer.Option(help="Template ref to update to (default: the latest vX.Y.Z release)."),
    ] = None,
    data: Answers = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing; say whether a newer release exists (exit 1 when one does).",
        ),
    ] = False,
) -> None:
    """Pull template changes into a service, keeping the team's edits.

    Refuses a tree with uncommitted changes, and an update that would change the arguments
    of an existing RabbitMQ queue, before anything is written. After updating, lists every
    file a person must still merge (conflict markers, .rej files) and exits 1 if there is
    any. Exit codes: 0 updated (or up to date), 1 conflicts left, 2 refused.
    """
    from . import render
    from . import update as updating

    try:
        if check:
            raise typer.Exit(_check_for_release(path))
        answers = render.parse_data(data or [])
        with err.status("Updating (copier renders the template three times)…"):
            outcome = updating.update(path, to=to, data=answers)
    except (render.RenderError, updating.UpdateError) as error:
        err.print(f"[bold red]keel update:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    _summarise(outcome)
    if outcome.new_findings:
        err.print(
            f"[bold yellow]keel check:[/] {len(outcome.new_findings)} finding(s) the update "
            "brought (see `keel check` in the README):",
            highlight=False,
        )
        for f in outcome.new_findings:
            err.print(f"  {f}", markup=False)
    if outcome.conflicts:
        err.print(
            f"[bold red]keel update:[/] {len(outcome.conflicts)} file(s) need a manual merge "
            "(copier itself would have exited 0):",
            highlight=False,
        )
        for name in outcome.conflicts:
            err.print(f"  {name}", highlight=False)
        err.print(
            "Resolve the <<<<<<< / >>>>>>> blocks, apply and delete each .rej file, run the "
            "tests, then commit.",
            highlight=False,
        )
        raise typer.Exit(1)


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


Codes = Annotated[
    str | None,
    typer.Option(metavar="CODES", help="Comma-separated rule codes or prefixes, e.g. L1,L17a."),
]


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="The service directory to audit.")] = Path("."),
    output_format: Annotated[
        Format, typer.Option("--format", help="text (ruff-style), json or sarif (2.1.0).")
    ] = Format.text,
    select: Codes = None,
    ignore: Codes = None,
) -> None:
    """Audit a service, rendered by Keel or not, for the seventeen production lessons.

    Reads compose files, Dockerfiles and entrypoint scripts, Python (with the AST: nothing
    is imported or run), Kubernetes YAML and topology.yaml. Exit codes: 0 clean, 1
    findings, 2 usage error (no such directory, an unknown code).
    """
    from .checks import lessons, report
    from .checks.findings import Tree
    from .checks.overlays import KubectlMissing

    for option, given in (("--select", select), ("--ignore", ignore)):
        for code in _codes(given):
            if not any(known.startswith(code) for known in lessons.RULES):
                err.print(
                    f"keel check: {option} {code} matches no rule", markup=False, soft_wrap=True
                )
                raise typer.Exit(2)
    if not path.is_dir():
        err.print(f"keel check: {path} is not a directory", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    chosen = lessons.selected(lessons.RULES, _codes(select), _codes(ignore))
    tree = Tree(path)
    try:
        findings = lessons.run(tree, chosen)
    except KubectlMissing as error:
        err.print(f"keel check: {error.reason}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if output_format is Format.json:
        print(report.as_json(findings))
    elif output_format is Format.sarif:
        print(report.sarif(findings, chosen))
    else:
        print(report.text(findings, len(tree.files)))
    raise typer.Exit(1 if findings else 0)


def _codes(given: str | None) -> list[str]:
    return [code.strip() for code in (given or "").split(",") if code.strip()]


@app.command("matrix")
def show_matrix(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: a list of {name, values, answers}.")
    ] = False,
) -> None:
    """Print the answer sets Keel is tested with.

    They form a pairwise covering set over framework x queue_type x dead_letter x the naming
    edge cases: every pair of values of any two of them meets in at least one set. Keel's own
    tests and its CI jobs (one per set) take their variants from this list. Render one with
    `keel new DIR --defaults -d KEY=VALUE ...`, using the set's answers.
    """
    rows = matrix.table()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    grid = Table(
        title=f"{len(rows)} answer sets; every pair of values meets in one of them",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    grid.add_column("name", no_wrap=True)
    for dimension in matrix.DIMENSIONS:
        grid.add_column(dimension.split("_")[0], no_wrap=True)
    for row in rows:
        grid.add_row(row["name"], *row["values"].values())
    out.print(grid)
    for case, answers in matrix.NAMING.items():
        flags = " ".join(shlex.quote(f"{key}={value}") for key, value in answers.items())
        out.print(f"naming {case}: {flags or 'the default answers'}", markup=False)


def _check_for_release(path: Path) -> int:
    from . import update as updating

    answers = updating.read_answers(path.expanduser().resolve())
    current = str(answers.get("_commit", "?"))
    latest = updating.latest_release(answers["_src_path"])
    current_version = updating.version_of(current)
    if current_version is not None and current_version >= latest.version:
        out.print(f"Up to date: {current} is the latest release.")
        return 0
    out.print(f"A newer release exists: {current} -> {latest.tag} (run `keel update`).")
    return 1


def _summarise(outcome: "updating.Outcome") -> None:
    if not outcome.changes:
        out.print(f"Nothing to change: already at {outcome.to_version}.")
        return
    kinds = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed"}
    counts = {
        name: sum(1 for status, _ in outcome.changes if status == code)
        for code, name in kinds.items()
    }
    summary = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
    out.print(f"[green]Updated[/] from {outcome.from_version} to {outcome.to_version}: {summary}")
    for status, name in outcome.changes:
        out.print(f"  {kinds.get(status, status)[:1].upper()} {name}", highlight=False)
