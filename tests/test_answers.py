"""Bad answers are refused with copier's validator message, and nothing is written."""

import pytest
from typer.testing import CliRunner

from generator.cli import app

from .conftest import BIN, REPOSITORY, run

BAD_ANSWERS = {
    "slug with uppercase": (["project_slug=Billing"], 'project_slug "Billing" is invalid'),
    "slug too long": (["project_slug=" + "a" * 25], "2-24 lowercase letters"),
    "slug with double dash": (["project_slug=a--b"], "single dashes"),
    "slug reads as a YAML boolean": (["project_slug=no"], "reads as a boolean or null in YAML"),
    "package is a keyword": (["package_name=class"], "is a Python keyword"),
    "package shadows a dependency": (["package_name=celery"], "shadows a package"),
    "package shadows fastapi": (["package_name=fastapi"], "shadows a package"),
    "package shadows the standard library": (["package_name=json"], "standard library"),
    "package named test": (["package_name=test"], "shadows a package"),
    "package not an identifier": (["package_name=9lives"], "not a valid package name"),
    "empty domain list": (["domains=[]"], "domains is empty"),
    "domains not a list": (["domains=orders"], "must be a YAML list"),
    "keyword domain": (["domains=[orders, class]"], 'domain "class" is reserved'),
    "module-name domain": (["domains=[web]"], 'domain "web" is reserved'),
    "domain reads as a YAML boolean": (["domains=[orders, y]"], 'domain "y" is reserved'),
    "duplicate domain": (["domains=[orders, billing, orders]"], "listed more than once"),
    "domain with dash": (["domains=[order-items]"], 'domain "order-items" is invalid'),
    "domain too long": (["domains=[" + "a" * 17 + "]"], "1-16 lowercase letters"),
    "empty project name": (["project_name= "], "project_name is empty"),
}


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=list(BAD_ANSWERS))
def test_keel_new_refuses_bad_answers(tmp_path, case):
    pairs, message = BAD_ANSWERS[case]
    destination = tmp_path / "service"
    arguments = ["new", str(destination), "--defaults", "--vcs-ref", "HEAD"]
    for pair in pairs:
        arguments += ["--data", pair]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not destination.exists()


def test_plain_copier_refuses_the_same_answers(tmp_path):
    destination = tmp_path / "service"
    result = run(
        BIN / "copier",
        "copy",
        "--vcs-ref",
        "HEAD",
        "--defaults",
        "--data",
        "domains=[orders, orders]",
        REPOSITORY,
        destination,
        check=False,
    )
    assert result.returncode != 0
    assert 'domain "orders" is listed more than once' in result.stderr
    assert not destination.exists()


def test_a_non_empty_destination_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["new", str(tmp_path), "--defaults", "--vcs-ref", "HEAD"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "is not empty" in output and "--force" in output
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_force_renders_into_a_non_empty_destination(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(
        app, ["new", str(tmp_path), "--defaults", "--force", "--vcs-ref", "HEAD"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compose.yaml").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_malformed_data_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["new", str(tmp_path / "s"), "--data", "domains"])
    assert result.exit_code == 1
    assert "is not KEY=VALUE" in result.output
    assert not (tmp_path / "s").exists()


def test_version_and_help():
    assert CliRunner().invoke(app, ["--version"]).output.startswith("keel ")
    help_text = CliRunner().invoke(app, ["new", "--help"]).output
    for option in ("--defaults", "--data", "--template", "--vcs-ref", "--force"):
        assert option in help_text
