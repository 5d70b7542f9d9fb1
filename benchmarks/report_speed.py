"""`cellbench report` on a run folder: wall and CPU seconds, and whether it writes what a reference report holds.

Writes the report ``--repeat`` times into a temporary folder and prints each
run's wall and CPU (user + sys) seconds. With ``--reference DIR`` (a report
written earlier, e.g. by an older cellbench) it also checks that every file
(tables, tables.json, report.html, figures) is byte-for-byte the same and
names those that differ. A run folder to try: ``make demo``'s
``cellbench-demo/run``.

    .venv/bin/python benchmarks/report_speed.py RUN [--reference OLD_REPORT] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cellbench.report import write_report


def _differences(reference: Path, out: Path) -> list[str]:
    names = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    names |= {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    return sorted(str(n) for n in names
                  if not (reference / n).is_file() or not (out / n).is_file()
                  or (reference / n).read_bytes() != (out / n).read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `cellbench run` folder")
    parser.add_argument("--reference", type=Path, help="a report of the same run to compare with, byte for byte")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(max(1, args.repeat)):
            out = Path(tmp) / f"report_{k}"
            cpu, wall = os.times(), time.perf_counter()
            write_report(args.run, out)
            wall, after = time.perf_counter() - wall, os.times()
            cpu = (after.user - cpu.user) + (after.system - cpu.system)
            print(f"run {k + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU (user + sys)")
        if args.reference is not None:
            differ = _differences(args.reference, out)
            print("same files as the reference, byte for byte" if not differ else
                  f"{len(differ)} file(s) differ from the reference: {', '.join(differ)}")


if __name__ == "__main__":
    main()
