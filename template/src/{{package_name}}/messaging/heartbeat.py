"""Worker liveness without HTTP and without a broker round trip.

A consumer bootstep asks the consumer's own event loop to touch a heartbeat file every few
seconds; ``probe-worker NAME`` reports unhealthy when the file is older than the allowed
age. A loop that is stuck, or a worker that lost its broker connection for good, stops
touching the file.
"""

import argparse
import sys
import time
from pathlib import Path

from celery import bootsteps

from ..faults import entry_point
from ..settings import get_settings
from .topology import load


def heartbeat_file(worker: str) -> Path:
    return Path(get_settings().worker_heartbeat_dir) / f"{worker}.heartbeat"


class Heartbeat(bootsteps.StartStopStep):
    """Consumer step, added by the ``worker`` command (which names the worker in app.conf)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.path = heartbeat_file(parent.app.conf.topology_worker)
        self.timer_entry = None

    def start(self, parent) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.touch()
        # The timer only *schedules* the touch; the consumer loop runs it, so the file
        # goes stale when that loop stops turning.
        self.timer_entry = parent.timer.call_repeatedly(
            get_settings().worker_heartbeat_seconds, parent.call_soon, (self.touch,)
        )

    def stop(self, parent) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
        self.path.unlink(missing_ok=True)

    def touch(self) -> None:
        self.path.touch()


@entry_point("probe-worker")
def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    # A misspelt name would otherwise read as "no heartbeat yet" and restart a healthy pod.
    workers = sorted(load().workers)
    parser = argparse.ArgumentParser(
        prog="probe-worker",
        description="Exit 0 when the named worker's heartbeat is fresh, 1 otherwise.",
    )
    parser.add_argument(
        "worker", choices=workers, metavar="NAME", help=f"one of: {', '.join(workers)}"
    )
    args = parser.parse_args(argv)
    path = heartbeat_file(args.worker)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(
            f"probe-worker: {args.worker}: no heartbeat yet ({path}); the worker is not "
            "consuming yet, or its WORKER_HEARTBEAT_DIR differs from this one",
            file=sys.stderr,
        )
        return 1
    limit = settings.worker_heartbeat_max_age
    if age > limit:
        print(
            f"probe-worker: {args.worker}: last heartbeat {age:.0f}s ago (limit {limit:g}s); "
            "its consumer loop is stuck or lost the broker",
            file=sys.stderr,
        )
        return 1
    print(f"{args.worker}: healthy (heartbeat {age:.1f}s ago)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
