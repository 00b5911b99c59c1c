"""How long `keel check` takes on a rendered service, end to end (process start included).

    python benchmarks/check.py [--runs 9] [--data framework=django ...]

Renders one service (the default answers unless --data says otherwise), then prints the
median, fastest and slowest wall time of `keel check` on it and the number of files read.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEL = Path(sys.executable).parent / "keel"


def timed(*command: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed: {result.stderr}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--data", "-d", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    try:
        service = scratch / "service"
        answers = [part for pair in args.data for part in ("--data", pair)]
        subprocess.run(
            [str(KEEL), "new", str(service), "--defaults", "--vcs-ref", "HEAD", *answers],
            check=True,
            capture_output=True,
        )
        runs = [timed(str(KEEL), "check", str(service)) for _ in range(args.runs)]
    finally:
        shutil.rmtree(scratch)
    times = sorted(elapsed for elapsed, _ in runs)
    print(runs[0][1].strip().splitlines()[-1])
    print(
        f"keel check: median {statistics.median(times):.3f} s, fastest {times[0]:.3f} s, "
        f"slowest {times[-1]:.3f} s over {len(times)} runs"
    )


if __name__ == "__main__":
    main()
