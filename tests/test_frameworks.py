"""One copy of everything shared: FastAPI and Django services rendered with the same answers
differ only in the files the README's table "What differs between frameworks" lists."""

import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPOSITORY, comparable, render_variant

ANSWERS = {"project_name": "Twin Shop", "domains": "[orders, billing]"}
TABLE_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def listed_in_readme() -> set[str]:
    readme = (REPOSITORY / "README.md").read_text()
    section = readme.split("## What differs between frameworks", 1)[1].split("\n## ", 1)[0]
    return set(TABLE_ROW.findall(section))


def pattern(path: str, package: str, domains: list[str]) -> str:
    """``src/twin_shop/orders/models.py`` -> ``src/<package>/<domain>/models.py``."""
    parts = path.split("/")
    if parts[:2] == ["src", package]:
        parts[1] = "<package>"
        if len(parts) > 3 and parts[2] in domains:
            parts[2] = "<domain>"
    return "/".join(parts)


def files(tree: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(tree)): comparable(path)
        for path in tree.rglob("*")
        if path.is_file() and path.name != ".copier-answers.yml"
    }


def differing(tmp_path) -> set[str]:
    fastapi = render_variant(tmp_path / "fastapi", {**ANSWERS, "framework": "fastapi"})
    django = render_variant(tmp_path / "django", {**ANSWERS, "framework": "django"})
    answers = yaml.safe_load((fastapi / ".copier-answers.yml").read_text())
    one, other = files(fastapi), files(django)
    paths = {name for name in one.keys() | other.keys() if one.get(name) != other.get(name)}
    return {pattern(path, answers["package_name"], answers["domains"]) for path in paths}


def covered(path: str, listed: set[str]) -> bool:
    return path in listed or any(e.endswith("/") and path.startswith(e) for e in listed)


def test_only_the_listed_files_differ_between_frameworks(tmp_path):
    found, listed = differing(tmp_path), listed_in_readme()
    assert sorted(path for path in found if not covered(path, listed)) == []
    # And the table lists nothing that does not differ.
    assert sorted(entry for entry in listed if not any(covered(p, {entry}) for p in found)) == []


@pytest.mark.parametrize("entry", ["src/<package>/messaging/", "docker/entrypoint.sh"])
def test_a_shared_file_listed_or_changed_is_caught(tmp_path, entry):
    """The check itself: a shared file that differed would be reported."""
    found = differing(tmp_path) | {entry + ("batches.py" if entry.endswith("/") else "")}
    assert [path for path in found if not covered(path, listed_in_readme())]


def reserved_domain_names() -> set[str]:
    validator = yaml.safe_load((REPOSITORY / "copier.yml").read_text())["domains"]["validator"]
    return set(re.search(r'"([a-z_ ]+)" ?\.split\(\)', validator).group(1).split())


@pytest.mark.parametrize("framework", ["fastapi", "django"])
def test_no_domain_can_take_the_name_of_a_module_of_the_service(tmp_path, framework):
    """A domain is a package next to the service's own modules: it must never shadow one."""
    tree = render_variant(tmp_path / framework, {**ANSWERS, "framework": framework})
    answers = yaml.safe_load((tree / ".copier-answers.yml").read_text())
    package = tree / "src" / answers["package_name"]
    modules = {path.stem for path in package.iterdir() if not path.name.startswith("__")}
    assert sorted(modules - set(answers["domains"]) - reserved_domain_names()) == []
