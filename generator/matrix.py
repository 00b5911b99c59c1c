"""The answer sets Keel is tested with: a pairwise covering set, so every pair of values of
any two dimensions meets in at least one rendered service, at a fraction of the services the
full product would need."""

from itertools import combinations

#: What each answer set varies. The naming cases bundle the edge cases of names, so that one
#: service carries them all: the shortest slug with one domain named like its package, or the
#: longest slug with the shortest, the longest and an underscored domain name.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "framework": ("fastapi", "django"),
    "queue_type": ("classic", "quorum"),
    "dead_letter": ("policy", "arguments"),
    "naming": ("defaults", "one-domain", "three-domains"),
}

NAMING: dict[str, dict[str, str]] = {
    "defaults": {},
    # The shortest slug, and a domain named like the package it lives in (`my.my`).
    "one-domain": {"project_name": "My", "project_slug": "my", "domains": "[my]"},
    "three-domains": {
        "project_name": "Ünïcode & Co. -- Payments Platform 2000!!",
        "project_slug": "abcdefghijklmnopqrstuvwx",
        "package_name": "p",
        "domains": "[a, x9, abcdefghij_klmno]",
    },
}

#: name -> the values it takes in each dimension.
SETS: dict[str, dict[str, str]] = {
    "defaults": {
        "framework": "fastapi", "queue_type": "classic", "dead_letter": "policy",
        "naming": "defaults",
    },
    "django-quorum-arguments": {
        "framework": "django", "queue_type": "quorum", "dead_letter": "arguments",
        "naming": "defaults",
    },
    "one-domain-django": {
        "framework": "django", "queue_type": "classic", "dead_letter": "policy",
        "naming": "one-domain",
    },
    "one-domain-quorum-arguments": {
        "framework": "fastapi", "queue_type": "quorum", "dead_letter": "arguments",
        "naming": "one-domain",
    },
    "three-domains-django-arguments": {
        "framework": "django", "queue_type": "classic", "dead_letter": "arguments",
        "naming": "three-domains",
    },
    "three-domains-quorum": {
        "framework": "fastapi", "queue_type": "quorum", "dead_letter": "policy",
        "naming": "three-domains",
    },
}  # fmt: skip


def values(name: str) -> dict[str, str]:
    """An answer set's value in every dimension (the first value where it names none)."""
    return {
        dimension: SETS[name].get(dimension, choices[0])
        for dimension, choices in DIMENSIONS.items()
    }


def answers(name: str) -> dict[str, str]:
    """The copier answers of an answer set; questions it does not name keep their default."""
    chosen = values(name)
    data = {key: value for key, value in chosen.items() if key != "naming"}
    return {**NAMING[chosen["naming"]], **data}


def uncovered_pairs() -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Pairs of values of two dimensions that no answer set combines (none, for a covering set)."""
    seen = {pair for name in SETS for pair in combinations(sorted(values(name).items()), 2)}
    return [
        pair
        for first, second in combinations(sorted(DIMENSIONS), 2)
        for pair in (
            ((first, a), (second, b)) for a in DIMENSIONS[first] for b in DIMENSIONS[second]
        )
        if pair not in seen
    ]


def table() -> list[dict]:
    """Every answer set with its dimension values and copier answers, as `keel matrix` prints
    them and CI's jobs take them."""
    return [{"name": name, "values": values(name), "answers": answers(name)} for name in SETS]
