"""Keel's hygiene rules for GitHub Actions workflows, beyond what the workflow schema and
zizmor check: what every workflow Keel ships (its own and each service's) must carry.

W101 no permissions at the top (`permissions: {}`); each job asks for what it needs
W102 every job has `permissions` naming `contents: read`
W103 a `concurrency` group at the top
W104 `timeout-minutes` on every job
W105 every action is pinned by a full commit SHA, with its version in a comment
W106 actions/checkout keeps no credentials (`persist-credentials: false`)
W107 no `${{ }}` inside `run:` (values go through `env:`)
W108 every service container carries a health command
"""

import re
from pathlib import Path

import yaml

PINNED = re.compile(r"^\s*-?\s*uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?P<comment>\s+#\s*v\d\S*)?")
SHA = re.compile(r"^[0-9a-f]{40}$")


def problems(path: Path) -> list[str]:
    """Every broken rule, as ``"<file>: W1xx <where>: <what>"``."""
    text = path.read_text()
    workflow = yaml.safe_load(text)
    found = [f"W105 line {number}: {why}" for number, why in _unpinned(text)]
    if workflow.get("permissions") != {}:
        found.append("W101 top level: set `permissions: {}`; jobs ask for what they need")
    if "concurrency" not in workflow:
        found.append("W103 top level: no `concurrency` group")
    for name, job in workflow.get("jobs", {}).items():
        found += [f"{rule} job {name}: {why}" for rule, why in _job_problems(job)]
    return [f"{path.name}: {problem}" for problem in found]


def _unpinned(text: str):
    for number, line in enumerate(text.splitlines(), 1):
        match = PINNED.match(line)
        if not match or match["action"].startswith("./"):
            continue
        if not SHA.match(match["ref"]):
            yield number, f"{match['action']} is pinned to {match['ref']}, not a commit SHA"
        elif not match["comment"]:
            yield number, f"{match['action']}: add the version in a comment (# vX.Y.Z)"


def _job_problems(job: dict):
    if (job.get("permissions") or {}).get("contents") != "read":
        yield "W102", "`permissions` must name `contents: read`"
    if "timeout-minutes" not in job:
        yield "W104", "no `timeout-minutes`"
    for name, service in (job.get("services") or {}).items():
        if "--health-cmd" not in str(service.get("options", "")):
            yield "W108", f"service {name} has no `--health-cmd` in its options"
    for index, step in enumerate(job.get("steps", []), 1):
        where = f"step {step.get('name') or index}"
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            if (step.get("with") or {}).get("persist-credentials") is not False:
                yield "W106", f"{where}: actions/checkout needs `persist-credentials: false`"
        if "${{" in step.get("run", ""):
            yield "W107", f"{where}: `${{{{` inside run:; pass the value through env:"
