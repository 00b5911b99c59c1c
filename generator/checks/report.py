"""`keel check`'s output: ruff-style text, JSON, or SARIF 2.1.0 for code-scanning upload."""

import json
from collections import Counter
from importlib.metadata import version

from .findings import UNREADABLE, Finding
from .lessons import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP = "https://github.com/keel-dev/keel#keel-check"


def text(findings: list[Finding], files: int) -> str:
    lines = [str(finding) for finding in findings]
    if not findings:
        lines.append(f"All checks passed ({files} files read).")
    else:
        counts = Counter(f.code for f in findings)
        by_code = ", ".join(f"{code} x{count}" for code, count in sorted(counts.items()))
        lines.append(f"Found {len(findings)} problem(s) in {files} files read: {by_code}.")
    return "\n".join(lines)


def as_json(findings: list[Finding]) -> str:
    return json.dumps(
        [
            {"path": f.path, "line": f.line, "column": f.column, "code": f.code,
             "message": f.message}
            for f in findings
        ],
        indent=2,
    )  # fmt: skip


def sarif(findings: list[Finding], codes: list[str]) -> str:
    rules = [
        {
            "id": code,
            "name": RULES[code].title,
            "shortDescription": {"text": RULES[code].title},
            "fullDescription": {"text": f"Prevents {RULES[code].prevents}."},
            "help": {"text": f"Fix: {RULES[code].fix}."},
            "helpUri": HELP,
        }
        for code in codes
    ]
    rules.append(
        {"id": UNREADABLE, "name": "unreadable file",
         "shortDescription": {"text": "a file that does not parse"}}
    )  # fmt: skip
    index = {rule["id"]: position for position, rule in enumerate(rules)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "keel check",
                        "version": version("keel"),
                        "informationUri": HELP,
                        "rules": rules,
                    }
                },
                "results": [
                    {
                        "ruleId": f.code,
                        "ruleIndex": index[f.code],
                        "level": "error",
                        "message": {"text": f.message},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f.path},
                                    "region": {"startLine": f.line, "startColumn": f.column},
                                }
                            }
                        ],
                    }
                    for f in findings
                ],
            }
        ],
    }
    return json.dumps(log, indent=2)
