"""Match latency with and without a reward backlog, split queues versus one mixed queue.

    python benchmarks/match_latency.py [--calls 200] [--backlog 3000]

Renders the default service into a temporary directory, installs it as its README says
(a virtualenv with `pip install -e ".[web,test]"`), and runs the measurement there against
the machine's real PostgreSQL and RabbitMQ (a throw-away database set and virtual host).
Prints p50/p99 of `<domain>.match` round trips:

- idle: only the match worker runs;
- split: thousands of rewards queued on `<domain>.reward`, served by their own worker;
- mixed: the same rewards deliberately published onto the match queue, the configuration
  Keel's topology validator refuses (lesson L15). Calls that exceed the timeout count as
  timeouts.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

from rendered import run_in_service, throwaway_environment

MIXED_CALLS = 10
CALL_TIMEOUT = 5.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(args) -> None:
    with throwaway_environment(args.measure, "latency") as (package, domains):
        workers: list[subprocess.Popen] = []
        try:
            run_scenarios(package, domains[0], args, workers)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait()


def run_scenarios(package: str, domain: str, args, workers: list) -> None:
    from tests import sql

    topology = import_module(f"{package}.messaging.topology").load()
    sql.execute(domain, "INSERT INTO records (key, value) VALUES ('k', 'v')")
    app = import_module(f"{package}.messaging.app").app
    client = import_module(f"{package}.messaging.calls").DomainClient(domain)
    match_queue, reward_queue = f"{domain}.match", f"{domain}.reward"

    def start(worker: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", f"{package}.messaging.worker", worker],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers.append(process)
        heartbeat = Path(os.environ["WORKER_HEARTBEAT_DIR"]) / f"{worker}.heartbeat"
        while not heartbeat.exists():
            time.sleep(0.1)
        return process

    def timed_calls(count: int) -> tuple[list[float], int]:
        latencies, timeouts = [], 0
        for _ in range(count):
            started = time.perf_counter()
            try:
                client.match("k", timeout=CALL_TIMEOUT)
                latencies.append((time.perf_counter() - started) * 1000)
            except Exception:  # noqa: BLE001 - a timed-out call is the measurement
                timeouts += 1
        return latencies, timeouts

    def backlog(queue: str) -> None:
        for index in range(args.backlog):
            app.send_task(
                reward_queue,
                kwargs={"subject": "s", "points": index},
                queue=queue,
                routing_key=queue,
            )

    rows = []
    match_worker = topology.queue(match_queue).worker
    start(match_worker)
    rows.append(("idle", *timed_calls(args.calls)))

    reward_worker = start(topology.queue(reward_queue).worker)
    backlog(reward_queue)
    rows.append((f"{args.backlog} rewards queued, split queues", *timed_calls(args.calls)))
    reward_worker.terminate()
    reward_worker.wait()

    backlog(match_queue)
    rows.append((f"{args.backlog} rewards queued, one mixed queue", *timed_calls(MIXED_CALLS)))

    print(f"\n{domain}.match round trips (timeout {CALL_TIMEOUT:g} s)")
    print(f"{'scenario':<44}{'calls':>6}{'p50 ms':>10}{'p99 ms':>10}{'timeouts':>10}")
    for name, latencies, timeouts in rows:
        p50 = f"{statistics.median(latencies):.1f}" if latencies else "-"
        p99 = f"{percentile(latencies, 0.99):.1f}" if latencies else "-"
        print(f"{name:<44}{len(latencies) + timeouts:>6}{p50:>10}{p99:>10}{timeouts:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
    else:
        run_in_service(__file__, ["--calls", str(args.calls), "--backlog", str(args.backlog)])


if __name__ == "__main__":
    main()
