"""`keel check`: the seventeen production lessons as rules, for any service.

Each rule is a function over a :class:`~generator.checks.findings.Tree` that yields
findings; it is registered with its code (L1-L17, with letters for the parts of a lesson),
the failure it prevents and how to fix it, which the README lists.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..findings import Finding, Tree
from ..overlays import KUSTOMIZATION_FILES as OVERLAY_NAMES

Check = Callable[[Tree], Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    code: str
    title: str
    prevents: str
    fix: str
    check: Check


RULES: dict[str, Rule] = {}


def rule(code: str, title: str, *, prevents: str, fix: str):
    def register(check: Check) -> Check:
        RULES[code] = Rule(code, title, prevents, fix, check)
        return check

    return register


def selected(codes: Iterable[str], select: list[str], ignore: list[str]) -> list[str]:
    """Codes kept by --select / --ignore; a prefix (L1, L) selects every code it starts."""

    def matches(code: str, patterns: list[str]) -> bool:
        return any(code == pattern or code.startswith(pattern) for pattern in patterns)

    return [
        code
        for code in codes
        if (not select or matches(code, select)) and not matches(code, ignore)
    ]


def run(tree: Tree, codes: Iterable[str]) -> list[Finding]:
    found = set()
    tree.start_overlays()
    for code in codes:
        found.update(RULES[code].check(tree))
    found |= set(tree.unreadable) | set(tree.unbuildable)
    # Built overlays are named by their kustomization file; what a plain file already shows
    # with its line is not repeated there.
    in_files = {(f.code, f.message) for f in found if Path(f.path).name not in OVERLAY_NAMES}
    return sorted(
        f
        for f in found
        if Path(f.path).name not in OVERLAY_NAMES or (f.code, f.message) not in in_files
    )


from . import compose, kubernetes, python, scripts  # noqa: E402,F401  (register the rules)
