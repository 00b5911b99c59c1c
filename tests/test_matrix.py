"""The answer sets Keel tests cover every pair of values of any two dimensions."""

import json
import subprocess

import pytest

from generator import matrix

from .conftest import BIN, VARIANTS


def test_every_pair_of_values_meets_in_some_answer_set():
    assert matrix.uncovered_pairs() == []


@pytest.mark.parametrize("dropped", list(matrix.SETS))
def test_each_answer_set_is_needed_for_some_pair(monkeypatch, dropped):
    """The set is minimal: without any one answer set some pair goes untested."""
    monkeypatch.setattr(matrix, "SETS", {k: v for k, v in matrix.SETS.items() if k != dropped})
    assert matrix.uncovered_pairs()


def test_answers_keep_naming_out_of_copier_data():
    data = matrix.answers("three-domains-quorum")
    assert "naming" not in data
    assert data["queue_type"] == "quorum" and data["project_slug"] == "abcdefghijklmnopqrstuvwx"
    assert matrix.answers("one-domain-django")["framework"] == "django"
    assert matrix.answers("defaults") == {
        "framework": "fastapi", "queue_type": "classic", "dead_letter": "policy",
    }  # fmt: skip


def test_keel_matrix_prints_the_sets_the_tests_render():
    printed = subprocess.run(
        [BIN / "keel", "matrix", "--json"], capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(printed)
    assert {row["name"]: row["answers"] for row in rows} == VARIANTS
    assert [row["name"] for row in rows] == list(matrix.SETS)
    table = subprocess.run([BIN / "keel", "matrix"], capture_output=True, text=True).stdout
    assert all(name in table for name in matrix.SETS), table


def test_the_naming_cases_reach_the_edges_of_every_name():
    slugs = [case.get("project_slug", "acme-service") for case in matrix.NAMING.values()]
    assert {len(slug) for slug in slugs} >= {2, 24}, "the shortest and the longest slug"
    one = matrix.NAMING["one-domain"]
    assert one["domains"] == f"[{one['project_slug']}]", "a domain named like its package"
    domains = matrix.NAMING["three-domains"]["domains"].strip("[]").split(", ")
    assert {len(name) for name in domains} >= {1, 16} and any("_" in name for name in domains)
    naming = {matrix.values(name)["naming"] for name in matrix.SETS}
    assert naming == set(matrix.DIMENSIONS["naming"]) == set(matrix.NAMING)
