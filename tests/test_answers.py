"""Bad answers are refused with copier's validator message, and nothing is written; the
default answers derived from any project name are valid."""

import functools
import keyword
import string
import sys
import tempfile

import pytest
import yaml
from copier._main import Worker
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jinja2 import Template
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
    "slug names a locked package": (["project_slug=rich"], "names a package the service depends"),
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


def plain_copier_copy(destination, answer: str, check: bool = True):
    """`copier copy --defaults --data ANSWER` of this repository, without keel."""
    return run(
        BIN / "copier", "copy", "--vcs-ref", "HEAD", "--defaults", "--data", answer,
        REPOSITORY, destination, check=check,
    )  # fmt: skip


def test_plain_copier_refuses_the_same_answers(tmp_path):
    destination = tmp_path / "service"
    result = plain_copier_copy(destination, "domains=[orders, orders]", check=False)
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


class Questions:
    """copier.yml's name questions, evaluated in copier's own Jinja environment."""

    NAMES = ("project_name", "project_slug", "package_name")

    def __init__(self, worker: Worker) -> None:
        self.environment = worker.jinja_env
        self.spec = worker.template.questions_data
        self.templates = {
            (name, key): self.compile(self.spec[name][key])
            for name in self.NAMES
            for key in ("default", "validator")
        }

    def compile(self, source: str) -> Template:
        return self.environment.from_string(source)

    @property
    def reserved_names(self) -> dict[str, list[str]]:
        """The hidden value that defaults and validators share (never asked)."""
        return self.spec["reserved_names"]["default"]

    @functools.cached_property
    def locked_packages(self) -> list[str]:
        """The hidden list of the packages in the template's uv locks (never asked)."""
        return yaml.safe_load(self.compile(self.spec["locked_packages"]["default"]).render())

    def context(self, answers: dict[str, str]) -> dict:
        hidden = {"reserved_names": self.reserved_names, "locked_packages": self.locked_packages}
        return {**hidden, **answers}

    def refusal(self, name: str, answers: dict[str, str]) -> str:
        """The validator's message for `answers[name]`, empty when copier accepts it."""
        return self.templates[name, "validator"].render(self.context(answers)).strip()

    def derive(self, project_name: str) -> dict[str, str]:
        """The answers `--defaults --data project_name=...` gets, in copier's order."""
        answers = {"project_name": project_name}
        for name in ("project_slug", "package_name"):
            answers[name] = self.templates[name, "default"].render(self.context(answers))
        return answers


@pytest.fixture(scope="module")
def questions():
    """Copier builds its environment (filters such as regex_replace) from the template."""
    with (
        tempfile.TemporaryDirectory() as destination,
        Worker(src_path=str(REPOSITORY), dst_path=destination, vcs_ref="HEAD") as worker,
    ):
        yield Questions(worker)


# Names that ask for trouble: words the package validator refuses, YAML booleans.
TROUBLE_WORDS = sorted(
    {*keyword.kwlist, *keyword.softkwlist, *sys.stdlib_module_names}
    | {"celery", "fastapi", "pydantic_core", "sqlalchemy", "kombu", "test", "tests", "app", "src"}
    | {"django", "rich", "celery-batches", "click_didyoumean", "opentelemetry api", "Mako"}
    | {"yes", "no", "on", "off", "y", "n", "true", "false", "null", "none"}
)
PUNCTUATION = string.punctuation + string.whitespace + string.digits
ANY_LETTER = st.characters(categories=["L"])
PROJECT_NAMES = st.one_of(
    st.text(min_size=1, max_size=80),
    st.text(ANY_LETTER, min_size=1, max_size=30),
    st.sampled_from(TROUBLE_WORDS).flatmap(
        lambda word: st.sampled_from(
            [word, word.upper(), word.title(), word.replace("_", " "), f" {word}!", f"1 {word}"]
        )
    ),
    st.text(string.ascii_letters + string.digits + " -_.&", min_size=25, max_size=60),
    st.lists(st.sampled_from(TROUBLE_WORDS), min_size=2, max_size=8).map(" ".join),
    st.tuples(st.text(PUNCTUATION, max_size=20), ANY_LETTER, st.text(PUNCTUATION, max_size=20)).map(
        "".join
    ),
)


@settings(max_examples=500, deadline=None, database=None)
@given(project_name=PROJECT_NAMES)
@example(project_name="Customer Loyalty Services")  # slug of 25-29 characters
@example(project_name="Import")
@example(project_name="Yes")
@example(project_name="Ünïcode")
@example(project_name="データ")
@example(project_name="x" * 23 + "-" + "y" * 10)  # cut right after a dash
def test_every_project_name_derives_a_valid_slug_and_package(questions, project_name):
    assume(not questions.refusal("project_name", {"project_name": project_name}))
    answers = questions.derive(project_name)
    assert questions.refusal("project_slug", answers) == "", answers
    assert questions.refusal("package_name", answers) == "", answers


def refused_words(questions: Questions) -> list[str]:
    """Every word the slug and package validators refuse, as copier.yml lists them."""
    listed = [word for words in questions.reserved_names.values() for word in words]
    return listed + questions.locked_packages


def test_every_word_a_validator_refuses_derives_valid_answers(questions):
    words = refused_words(questions)
    assert len(words) > 200, "the validators' word lists were not found"
    for word in words:
        for project_name in (word, word.replace("_", " ").title()):
            answers = questions.derive(project_name)
            assert questions.refusal("project_slug", answers) == "", answers
            assert questions.refusal("package_name", answers) == "", answers


# The defaults Keel shipped up to v0.4.0; where they gave valid answers, they still hold.
SHIPPED_SLUG = (
    "{{ project_name | lower | regex_replace('[^a-z0-9]+', '-') | regex_replace('^[^a-z]+', '')"
    " | truncate(24, true, '') | trim('-') }}"
)
SHIPPED_PACKAGE = "{{ project_slug | replace('-', '_') }}"


@settings(max_examples=300, deadline=None, database=None)
@given(project_name=PROJECT_NAMES)
@example(project_name="Acme Service")
@example(project_name="Ünïcode & Co. -- Payments Platform 2000!!")
def test_names_the_shipped_defaults_handled_keep_their_answers(questions, project_name):
    shipped = {"project_name": project_name}
    shipped["project_slug"] = questions.compile(SHIPPED_SLUG).render(shipped)
    shipped["package_name"] = questions.compile(SHIPPED_PACKAGE).render(shipped)
    # Names the shipped defaults failed for must derive something else.
    assume(not questions.refusal("project_slug", shipped))
    assume(not questions.refusal("package_name", shipped))
    assert questions.derive(project_name) == shipped


DERIVED = {
    "Acme Service": ("acme-service", "acme_service"),
    "Customer Loyalty Services": ("customer-loyalty-service", "customer_loyalty_service"),
    "Import": ("import", "import_service"),
    "Celery": ("celery-service", "celery_service"),
    "Django": ("django-service", "django_service"),
    "Opentelemetry API": ("opentelemetry-ap-service", "opentelemetry_ap_service"),
    "Json": ("json", "json_service"),
    "Test": ("test", "test_service"),
    "Yes": ("yes-service", "yes_service"),
    "On": ("on-service", "on_service"),
    "X": ("x-service", "x_service"),
    "Ωmega": ("mega", "mega"),
    "Ünïcode": ("n-code", "n_code"),
    "データ Service": ("service", "service"),
    "データ": ("service", "service"),
    "2000": ("service", "service"),
}


@pytest.mark.parametrize("project_name", DERIVED)
def test_what_a_project_name_derives(questions, project_name):
    answers = questions.derive(project_name)
    assert (answers["project_slug"], answers["package_name"]) == DERIVED[project_name]


RENDERED = ["Customer Loyalty Services", "Import", "データ"]


@pytest.mark.parametrize("project_name", RENDERED)
def test_keel_new_renders_with_the_derived_defaults(tmp_path, project_name):
    destination = tmp_path / "service"
    result = CliRunner().invoke(
        app,
        ["new", str(destination), "--defaults", "--vcs-ref", "HEAD"]
        + ["--data", f"project_name={project_name}"],
    )
    assert result.exit_code == 0, result.output
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    slug, package = DERIVED[project_name]
    assert (answers["project_slug"], answers["package_name"]) == (slug, package)
    assert (destination / "src" / package / "__init__.py").is_file()


def test_plain_copier_derives_the_same_defaults(tmp_path):
    destination = tmp_path / "service"
    plain_copier_copy(destination, "project_name=Customer Loyalty Services")
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "customer-loyalty-service"
    assert answers["package_name"] == "customer_loyalty_service"
