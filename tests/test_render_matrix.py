"""Every answer set renders a clean tree: no Jinja left, lint-clean, schema-valid compose."""

import filecmp
import re

import pytest
import yaml

from generator.checks import compose as compose_rules

from .conftest import (
    BIN,
    RECORDS_TEMPLATE_COMMIT,
    REPOSITORY,
    VARIANTS,
    comparable,
    native_run_artifacts,
    run,
)

# A Jinja expression, statement or comment left unrendered (the template writes each on one
# line). `${{ ... }}` is a GitHub Actions expression, meant to be there.
JINJA_MARKERS = re.compile(r"(?<!\$)\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")
KUBERNETES_NAME_LIMIT = 63


@pytest.fixture(params=list(VARIANTS))
def tree(request, rendered):
    return rendered[request.param]


def answers(tree) -> dict:
    return yaml.safe_load((tree / ".copier-answers.yml").read_text())


def test_no_jinja_is_left(tree):
    installed = native_run_artifacts(tree)
    for path in tree.rglob("*"):
        relative = path.relative_to(tree)
        if set(relative.parts) & set(installed):
            continue
        assert not JINJA_MARKERS.search(str(relative)), relative
        assert path.suffix != ".jinja", relative
        # The service's own templates (manifest_templates/, rendered by generate-manifests).
        if path.is_file() and path.suffix != ".j2":
            assert not JINJA_MARKERS.search(path.read_text()), relative


def test_python_passes_ruff_and_is_formatter_stable(tree):
    run(BIN / "ruff", "check", "--no-cache", ".", cwd=tree)
    run(BIN / "ruff", "format", "--no-cache", "--check", ".", cwd=tree)


def test_shell_scripts_pass_shellcheck(tree):
    scripts = sorted(tree.rglob("*.sh"))
    assert scripts
    run(BIN / "shellcheck", *scripts)


def test_dockerfile_passes_hadolint(tree):
    run(BIN / "hadolint", tree / "Dockerfile")


def test_compose_matches_the_compose_specification(tree):
    run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", tree / "compose.yaml")


def test_compose_follows_keels_start_order_rules(tree):
    compose = yaml.safe_load((tree / "compose.yaml").read_text())
    assert compose_rules.problems(compose) == []


def test_compose_gives_each_domain_its_own_database(tree):
    compose = yaml.safe_load((tree / "compose.yaml").read_text())
    domains = answers(tree)["domains"]
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["APP_DATABASES"].split() == domains
    for name, service in compose["services"].items():
        if name in ("postgres", "rabbitmq"):
            continue
        environment = service["environment"]
        assert "DATABASE_URL" not in environment
        for domain in domains:
            url = environment[f"{domain.upper()}_DATABASE_URL"]
            assert url.endswith(f"/{domain}")


def test_derived_kubernetes_names_fit(tree):
    chosen = answers(tree)
    for domain in chosen["domains"]:
        longest = f"{chosen['project_slug']}-{domain.replace('_', '-')}-reward-worker"
        assert len(longest) < KUBERNETES_NAME_LIMIT, longest


def test_the_entrypoint_is_strict_and_execs():
    entrypoint = (REPOSITORY / "template" / "docker" / "entrypoint.sh").read_text()
    lines = [line for line in entrypoint.splitlines() if line and not line.startswith("#")]
    assert "set -euo pipefail" in lines
    assert lines[-1] == 'exec "$@"'
    assert "nc " not in entrypoint and "curl" not in entrypoint


@pytest.mark.parametrize("name", ["defaults", "one-domain-django"])
def test_keel_new_equals_plain_copier_copy(rendered, tmp_path, name):
    copied = tmp_path / "copied"
    data = [part for key, value in VARIANTS[name].items() for part in ("--data", f"{key}={value}")]
    run(
        BIN / "copier", "copy", "--vcs-ref", "HEAD", "--defaults", "--quiet", *data,
        REPOSITORY, copied,
    )  # fmt: skip
    ignored = [*filecmp.DEFAULT_IGNORES, *native_run_artifacts(rendered[name])]
    differences = _differences(filecmp.dircmp(rendered[name], copied, ignore=ignored))
    assert set(differences) <= set(RECORDS_TEMPLATE_COMMIT), differences
    for file in differences:
        assert comparable(rendered[name] / file) == comparable(copied / file), file
    mine, theirs = answers(rendered[name]), answers(copied)
    mine.pop("_commit"), theirs.pop("_commit")
    assert mine == theirs
    assert mine["_src_path"] == str(REPOSITORY)


def _differences(comparison: filecmp.dircmp) -> list[str]:
    found = comparison.left_only + comparison.right_only + comparison.diff_files
    for sub in comparison.subdirs.values():
        found += _differences(sub)
    return found
