"""Rewards saved per second: batched as topology.yaml configures, against one per message.

    python benchmarks/reward_throughput.py [--rewards 20000] [--uncommitted]

Renders the default service into a temporary directory (HEAD of this repository, or the
working tree with --uncommitted), installs it as its README says (a virtualenv with
`pip install -e ".[web,test]"`), and measures there against the machine's real PostgreSQL
and RabbitMQ (a throw-away database set and virtual host). For each mode, N rewards are
published onto `<domain>.reward` while no worker runs; then the reward worker starts and
the clock runs from the moment it is ready to consume until the last row is saved
(its start-up time is printed apart). The rate compared is the steady one, over the
middle 80% of the rows (from the 10% to the 90% mark): it leaves out the ramp-up of the
first batches and the tail, where the last partial batch waits out `flush_interval` by
design, a fixed second that is latency, not throughput, and would otherwise make a
quarter of a batched run of 20,000. The end-to-end rate, last row included, is printed
beside it.

The comparison: the same service, the same reward worker (threads pool, concurrency and
prefetch from topology.yaml) and the same task, once with the topology's `flush_every`
and once with `flush_every: 1`. With 1, every reward is flushed alone, so each costs its
own pool hand-off, transaction, commit and acknowledgement: what one task per reward
costs, while the prefetch (unchanged) keeps the worker fed, so the broker is not what
limits either mode. A plain Celery task without celery-batches would save a little
bookkeeping per message but do the same database and broker work per reward.
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from rendered import run_in_service, throwaway_environment

POLL_SECONDS = 0.02
READY_TIMEOUT = 60.0
#: Slowest rate still waited for: below it, something is broken, not slow.
MINIMUM_RATE = 10.0
#: The steady rate is measured between these fractions of the rows saved.
STEADY_FROM = 0.1
STEADY_UNTIL = 0.9


def measure(args) -> None:
    with throwaway_environment(args.measure, "throughput") as (package, domains):
        topology_file = import_module(f"{package}.messaging.topology").TOPOLOGY_FILE
        original_topology = topology_file.read_text()
        try:
            run_modes(package, domains[0], args.rewards, topology_file)
        finally:
            topology_file.write_text(original_topology)


def with_flush_every(topology_text: str, domain: str, queue_key: str, flush_every: int) -> str:
    import yaml

    data = yaml.safe_load(topology_text)
    data["domains"][domain]["queues"][queue_key]["flush_every"] = flush_every
    return yaml.safe_dump(data, sort_keys=False)


def run_modes(package: str, domain: str, rewards: int, topology_file: Path) -> None:
    from kombu import Connection

    from tests import sql

    topology = import_module(f"{package}.messaging.topology").load()
    app = import_module(f"{package}.messaging.app").app
    queue = topology.queue(f"{domain}.reward")
    worker = topology.workers[queue.worker]
    heartbeat = Path(os.environ["WORKER_HEARTBEAT_DIR"]) / f"{worker.name}.heartbeat"
    original_topology = topology_file.read_text()

    def run(flush_every: int) -> Run:
        """Seconds from worker start to ready, and when each count of rows was saved."""
        topology_file.write_text(
            with_flush_every(original_topology, domain, queue.key, flush_every)
        )
        sql.execute(domain, "TRUNCATE rewards")
        with Connection(os.environ["BROKER_URL"]) as connection:
            connection.channel().queue_purge(queue.name)
        for index in range(rewards):
            app.send_task(queue.name, kwargs={"subject": f"s{index}", "points": index})
        heartbeat.unlink(missing_ok=True)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", f"{package}.messaging.worker", worker.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(heartbeat.exists, READY_TIMEOUT, "the worker did not get ready")
            ready = time.perf_counter()
            counts = []

            def all_saved() -> bool:
                counts.append((time.perf_counter() - ready, saved()))
                return counts[-1][1] >= rewards

            wait_until(all_saved, rewards / MINIMUM_RATE, f"fewer than {rewards} rewards saved")
        finally:
            process.terminate()
            process.wait(timeout=60)
        return Run(flush_every, ready - started, counts)

    def saved() -> int:
        return sql.scalar(domain, "SELECT count(*) FROM rewards")

    runs = {"batched": run(queue.spec.flush_every), "one per reward": run(1)}
    print(
        f"\n{queue.name}: {rewards} rewards queued, then worker {worker.name} started "
        f"({worker.pool} x{worker.concurrency}, prefetch {worker.prefetch})"
    )
    print(
        f"{'mode':<16}{'flush_every':>12}{'start-up s':>12}{'saving s':>10}"
        f"{'rewards/s':>11}{'steady/s':>10}"
    )
    for mode, result in runs.items():
        print(
            f"{mode:<16}{result.flush_every:>12}{result.startup:>12.2f}{result.seconds:>10.2f}"
            f"{rewards / result.seconds:>11.0f}{result.steady_rate(rewards):>10.0f}"
        )
    batched, single = runs.values()
    steady = batched.steady_rate(rewards) / single.steady_rate(rewards)
    print(
        f"batched / one per reward: {steady:.1f}x steady "
        f"({single.seconds / batched.seconds:.1f}x end to end)"
    )


@dataclass
class Run:
    flush_every: int
    startup: float
    #: (seconds since the worker was ready, rows saved by then), one per poll.
    counts: list[tuple[float, int]]

    @property
    def seconds(self) -> float:
        return self.counts[-1][0]

    def steady_rate(self, rewards: int) -> float:
        """Rows per second between the polls that first saw 10% and 90% of ``rewards``."""
        first = next((t, n) for t, n in self.counts if n >= rewards * STEADY_FROM)
        last = next((t, n) for t, n in self.counts if n >= rewards * STEADY_UNTIL)
        return (last[1] - first[1]) / (last[0] - first[0])


def wait_until(condition, timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"reward_throughput: {failure} within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Enough that the batched run lasts seconds: a last partial batch waits flush_interval
    # (1 s), which would dominate a run of 5,000.
    parser.add_argument("--rewards", type=int, default=20000)
    parser.add_argument(
        "--uncommitted", action="store_true", help="render the working tree instead of HEAD"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
    else:
        run_in_service(__file__, ["--rewards", str(args.rewards)], args.uncommitted)


if __name__ == "__main__":
    main()
