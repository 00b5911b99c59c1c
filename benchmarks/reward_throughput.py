"""Rewards saved per second: batched as topology.yaml configures, against one per message.

    python benchmarks/reward_throughput.py [--rewards 20000] [--uncommitted]

Renders the default service into a temporary directory (HEAD of this repository, or the
working tree with --uncommitted), installs it as its README says (a virtualenv with
`pip install -e ".[web,test]"`), and measures there against the machine's real PostgreSQL
and RabbitMQ (a throw-away database set and virtual host). For each mode, N rewards are
published onto `<domain>.reward` while no worker runs; then the reward worker starts and
the clock runs from the moment it is ready to consume until the last row is saved
(its start-up time is printed apart). Prints both rates and their ratio.

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
from importlib import import_module
from pathlib import Path

from rendered import run_in_service, throwaway_environment

POLL_SECONDS = 0.02
READY_TIMEOUT = 60.0
#: Slowest rate still waited for: below it, something is broken, not slow.
MINIMUM_RATE = 10.0


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

    def saved() -> int:
        return sql.scalar(domain, "SELECT count(*) FROM rewards")

    def run(flush_every: int) -> tuple[float, float]:
        """Seconds from worker start to ready, and from ready to the last row saved."""
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
            wait_until(
                lambda: saved() >= rewards,
                rewards / MINIMUM_RATE,
                f"fewer than {rewards} rewards saved",
            )
            done = time.perf_counter()
        finally:
            process.terminate()
            process.wait(timeout=60)
        return ready - started, done - ready

    rows = []
    for mode, flush_every in (("batched", queue.spec.flush_every), ("one per reward", 1)):
        startup, seconds = run(flush_every)
        rows.append((mode, flush_every, startup, seconds, rewards / seconds))

    print(
        f"\n{queue.name}: {rewards} rewards queued, then worker {worker.name} started "
        f"({worker.pool} x{worker.concurrency}, prefetch {worker.prefetch})"
    )
    print(f"{'mode':<16}{'flush_every':>12}{'start-up s':>12}{'saving s':>10}{'rewards/s':>11}")
    for mode, flush_every, startup, seconds, rate in rows:
        print(f"{mode:<16}{flush_every:>12}{startup:>12.2f}{seconds:>10.2f}{rate:>11.0f}")
    print(f"batched / one per reward: {rows[0][4] / rows[1][4]:.1f}x")


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
