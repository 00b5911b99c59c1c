"""How long `keel new --defaults` takes, end to end (process start included).

    python benchmarks/render.py [--runs 7]

Prints the median, fastest and slowest wall time and the number of files rendered. Copier
renders three times per `copier update`, so this number is paid again on every update.
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


def render_once(destination: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(KEEL), "new", str(destination), "--defaults", "--vcs-ref", "HEAD"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    try:
        times = [render_once(scratch / f"run{index}") for index in range(args.runs)]
        files = sum(1 for path in (scratch / "run0").rglob("*") if path.is_file())
    finally:
        shutil.rmtree(scratch)
    print(f"keel new --defaults: {args.runs} runs")
    print(f"  median {statistics.median(times):.3f} s")
    print(f"  min    {min(times):.3f} s   max {max(times):.3f} s")
    print(f"  files  {files}")


if __name__ == "__main__":
    main()
