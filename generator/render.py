"""Copier calls behind `keel new`: where the template is and how answers reach copier."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import copier
from copier.errors import CopierError

# The repository this package was installed from (editable install or a clone).
REPOSITORY = Path(__file__).resolve().parent.parent


class RenderError(Exception):
    """Rendering was refused; the message says why and how to fix it."""


@dataclass(frozen=True)
class Rendered:
    destination: Path
    files: int


def default_template() -> str:
    if not (REPOSITORY / "copier.yml").is_file():
        raise RenderError(
            f"no Keel template next to this installation ({REPOSITORY}); "
            "pass --template with the path or URL of the Keel repository"
        )
    return str(REPOSITORY)


def absolute_template(template: str) -> str:
    """Copier records the source in the answers file; updates need it absolute."""
    if "://" in template or template.startswith("git@"):
        return template
    path = Path(template).expanduser().resolve()
    if not (path / "copier.yml").is_file():
        raise RenderError(f"{template} is not a Keel template: it has no copier.yml")
    return str(path)


def parse_data(pairs: list[str]) -> dict[str, str]:
    data = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise RenderError(f"--data {pair!r} is not KEY=VALUE (e.g. --data domains='[orders]')")
        data[key.strip()] = value
    return data


def new(
    destination: Path,
    *,
    template: str | None = None,
    data: dict[str, str] | None = None,
    defaults: bool = False,
    vcs_ref: str | None = None,
    force: bool = False,
) -> Rendered:
    destination = destination.expanduser().resolve()
    if destination.exists() and not destination.is_dir():
        raise RenderError(f"{destination} exists and is not a directory")
    existed = destination.exists()
    if existed and any(destination.iterdir()) and not force:
        raise RenderError(
            f"{destination} is not empty; choose a new directory, or pass --force to render "
            "into it (files the template also renders are overwritten)"
        )
    source = absolute_template(template) if template else default_template()
    try:
        copier.run_copy(
            source,
            destination,
            data=data or {},
            defaults=defaults,
            vcs_ref=vcs_ref,
            overwrite=force,
            unsafe=False,
            quiet=True,
        )
    except BaseException as error:
        if not existed:
            shutil.rmtree(destination, ignore_errors=True)
        if isinstance(error, ValueError | CopierError):
            raise RenderError(str(error)) from None
        raise
    files = sum(1 for path in destination.rglob("*") if path.is_file() and ".git" not in path.parts)
    return Rendered(destination, files)
