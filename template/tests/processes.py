"""Workers and jobs of the rendered service, run as real processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Process:
    def __init__(self, command: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._output = log.open("w")
        self.popen = subprocess.Popen(
            command, env=env, stdout=self._output, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.text():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{marker!r} not seen in {self.log}:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._output.close()


def module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def environment(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}
