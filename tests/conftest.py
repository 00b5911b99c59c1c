"""Shared helpers: render the template from this working tree into temporary directories."""

import subprocess
import sys
from pathlib import Path

import pytest

from generator import render

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Answer sets the render matrix covers; names stay distinct so rendered packages never clash.
BASE_VARIANTS = {
    "defaults": {},
    "one-domain": {"project_name": "Solo", "domains": "[ledger]"},
    "three-domains": {"project_name": "Trio Shop", "domains": "[orders, billing, shipping]"},
    "edge-names": {
        "project_name": "Ünïcode & Co. -- Payments Platform 2000!!",
        "domains": "[a, x9, abcdefghij_klmno]",
    },
    "longest-slug": {
        "project_slug": "abcdefghijklmnopqrstuvwx",
        "package_name": "p",
        "domains": "[abcdefghijklmnop]",
    },
}
# Every variant with both queue types; the defaults also with DLX/TTL in queue arguments.
VARIANTS = {
    **BASE_VARIANTS,
    **{f"{name}-quorum": {**data, "queue_type": "quorum"} for name, data in BASE_VARIANTS.items()},
    "defaults-arguments": {"dead_letter": "arguments"},
    "defaults-quorum-arguments": {"queue_type": "quorum", "dead_letter": "arguments"},
}


def render_variant(destination: Path, data: dict[str, str]) -> Path:
    render.new(destination, template=str(REPOSITORY), data=data, defaults=True, vcs_ref="HEAD")
    return destination


def run(*command, cwd=None, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every variant, rendered once per test session."""
    root = tmp_path_factory.mktemp("rendered")
    return {name: render_variant(root / name, data) for name, data in VARIANTS.items()}
