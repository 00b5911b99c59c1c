"""`keel new` as a person types it: at a terminal, every question shows its default.

The command runs in a pseudo-terminal and its output feeds an emulated screen (pyte), so
the test sees what a person would see, including anything drawn over the questions.
"""

import os
import time

import pexpect
import pyte
import pytest
import yaml

from .conftest import BIN, REPOSITORY

ROWS, COLUMNS = 60, 240
ENTER, DOWN, CLEAR_LINE = "\r", "\x1b[B", "\x15"
QUESTION_SECONDS = 90  # the first question waits for copier to clone the template
RENDER_SECONDS = 300


class Terminal:
    """A command in a pseudo-terminal, and the screen a person would be looking at."""

    def __init__(self, command: list[str], cwd) -> None:
        self.child = pexpect.spawn(
            command[0],
            command[1:],
            cwd=str(cwd),
            env={**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)},
            dimensions=(ROWS, COLUMNS),
        )
        self.screen = pyte.Screen(COLUMNS, ROWS)
        # prompt_toolkit asks the terminal where the cursor is; a real terminal answers.
        self.screen.write_process_input = self.child.send
        self.stream = pyte.ByteStream(self.screen)

    def read(self, seconds: float) -> bool:
        """Feed the screen whatever arrives within `seconds`; False once the command ended."""
        try:
            self.stream.feed(self.child.read_nonblocking(65536, timeout=seconds))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return False
        return True

    def settle(self, quiet_seconds: float = 0.5, limit_seconds: float = 5) -> None:
        """Read until the command draws nothing for `quiet_seconds` (a spinner never stops)."""
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline and self.child.isalive():
            before = self.text()
            if not self.read(quiet_seconds) or self.text() == before:
                return

    def wait_for(self, found, what: str, limit_seconds: float = QUESTION_SECONDS):
        """Read until `found(self)` is not None, also once the screen has settled."""
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            if found(self) is not None:
                self.settle()
                if (result := found(self)) is not None:
                    return result
            if not self.read(0.2) and found(self) is None:
                break
        pytest.fail(f"never saw {what} on the screen:\n{self.text()}")

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(line for line in self.lines() if line)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def close(self) -> None:
        self.child.close(force=True)


def questions() -> dict[str, dict]:
    """The questions copier asks, in order, as copier.yml writes them."""
    config = yaml.safe_load((REPOSITORY / "copier.yml").read_text())
    return {
        name: spec
        for name, spec in config.items()
        if not name.startswith("_") and spec.get("when") is not False
    }


def prompt_line(terminal: Terminal, help_text: str) -> int | None:
    """The row of the newest prompt showing this question's help text, if any."""
    rows = [row for row, line in enumerate(terminal.lines()) if line.endswith(help_text)]
    return rows[-1] if rows else None


def text_question(terminal: Terminal, help_text: str, default: str):
    """Find the question being answered with its default pre-filled and the cursor after it."""

    def found(terminal: Terminal):
        row = prompt_line(terminal, help_text)
        if row is None or row + 1 >= ROWS:
            return None
        answer = terminal.lines()[row + 1]
        cursor = terminal.screen.cursor
        if answer == f"   {default}" and (cursor.y, cursor.x) == (row + 1, len(answer)):
            return row
        return None

    return terminal.wait_for(found, f"{help_text!r} with {default!r} pre-filled")


def choice_question(terminal: Terminal, help_text: str, selected: str):
    """Find the choice question being answered, with `selected` under the pointer."""

    def found(terminal: Terminal):
        row = prompt_line(terminal, help_text)
        if row is None:
            return None
        below = terminal.lines()[row + 1 : row + 12]
        return row if f" » {selected}" in below else None

    return terminal.wait_for(found, f"{help_text!r} with {selected!r} selected")


def test_every_question_shows_its_default_while_the_person_answers(tmp_path):
    asked = questions()
    assert list(asked) == [
        "project_name",
        "project_slug",
        "package_name",
        "framework",
        "domains",
        "queue_type",
        "dead_letter",
    ], "a question was added or moved: teach this test to answer it"
    helps = {name: " ".join(spec["help"].split()) for name, spec in asked.items()}
    destination = tmp_path / "service"
    terminal = Terminal([str(BIN / "keel"), "new", str(destination), "--vcs-ref", "HEAD"], tmp_path)
    try:
        text_question(terminal, helps["project_name"], asked["project_name"]["default"])
        terminal.send(CLEAR_LINE + "Customer Loyalty Services" + ENTER)
        # The slug and package defaults are derived from the name just typed.
        text_question(terminal, helps["project_slug"], "customer-loyalty-service")
        terminal.send(ENTER)
        text_question(terminal, helps["package_name"], "customer_loyalty_service")
        terminal.send(CLEAR_LINE + "loyalty" + ENTER)
        choice_question(terminal, helps["framework"], "FastAPI")
        terminal.send(ENTER)
        text_question(terminal, helps["domains"], "[orders, billing]")
        terminal.send(CLEAR_LINE + "[ledger, rewards]" + ENTER)
        choice_question(terminal, helps["queue_type"], "classic")
        terminal.send(DOWN)
        choice_question(terminal, helps["queue_type"], "quorum")
        terminal.send(ENTER)
        choice_question(terminal, helps["dead_letter"], "policy")
        terminal.send(ENTER)
        terminal.wait_for(
            lambda terminal: None if terminal.child.isalive() else True,
            "the command finish",
            limit_seconds=RENDER_SECONDS,
        )
        terminal.child.close()
        assert terminal.child.exitstatus == 0, terminal.text()
        assert f"into {destination}" in " ".join(terminal.text().split())
    finally:
        terminal.close()

    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert {name: answers[name] for name in asked} == {
        "project_name": "Customer Loyalty Services",
        "project_slug": "customer-loyalty-service",
        "package_name": "loyalty",
        "framework": "fastapi",
        "domains": ["ledger", "rewards"],
        "queue_type": "quorum",
        "dead_letter": "policy",
    }
    domains = sorted(path.name for path in (destination / "src" / "loyalty").iterdir())
    assert {"ledger", "rewards"} <= set(domains)
