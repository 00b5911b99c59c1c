"""The answer sets Keel tests cover every pair of values of any two dimensions."""

import pytest

from generator import matrix


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
