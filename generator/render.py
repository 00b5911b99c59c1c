"""Copier calls behind `keel new`: where the template is and how answers reach copier."""

import os
import shutil
from dataclasses import dataclass
from importlib.metadata import metadata, version
from pathlib import Path

import copier
from copier.errors import CopierError

# A checkout next to the package: an editable install, or a clone Keel runs from.
REPOSITORY = Path(__file__).resolve().parent.parent
# Names the environment variable that overrides where `keel new` renders from.
TEMPLATE_VARIABLE = "KEEL_TEMPLATE"


class RenderError(Exception):
    """Rendering was refused; the message says why and how to fix it."""


@dataclass(frozen=True)
class Rendered:
    destination: Path
    files: int


def source(template: str | None, vcs_ref: str | None) -> tuple[str, str | None]:
    """Where to render from, and at which ref.

    `--template`, else $KEEL_TEMPLATE, else the checkout this package runs from, else Keel's
    repository as the package records it. An installed wheel has no checkout next to it: it
    renders its own release, the tag of its version, unless `--vcs-ref` names another.
    """
    checkout = (REPOSITORY / "copier.yml").is_file()
    chosen = template or os.environ.get(TEMPLATE_VARIABLE) or None
    if chosen:
        location = absolute_template(chosen)
    elif checkout:
        location = str(REPOSITORY)
    else:
        location = recorded_repository()
    if vcs_ref is None and not checkout:
        vcs_ref = f"v{version('keel')}"
    return location, vcs_ref


def recorded_repository() -> str:
    """Keel's repository URL, from the package's metadata (`[project.urls] Repository`)."""
    for entry in metadata("keel").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise RenderError(
        "this Keel installation records no repository URL; pass --template with the path or "
        f"URL of the Keel repository (or set {TEMPLATE_VARIABLE})"
    )


def absolute_template(template: str) -> str:
    """Copier records the source in the answers file; updates need it absolute."""
    if "://" in template or template.startswith("git@"):
        return template
    path = Path(template).expanduser().resolve()
    bare_clone = (path / "HEAD").is_file() and (path / "objects").is_dir()
    if not (path / "copier.yml").is_file() and not bare_clone:
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
    location, vcs_ref = source(template, vcs_ref)
    try:
        copier.run_copy(
            location,
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
