"""Run the tests and the demo under several CPU instruction sets, and tabulate the demo's scores per set.

Each set is a name and the switches that emulate such a CPU (cellbench.runner.isa.SWITCHES); every
switch not in a set is unset for it, so `native=` is what this CPU does by itself. For each set, in
order: print what each library runs on (benchmarks/isa.py), run pytest with --pytest's arguments, run
`cellbench demo --out <prefix>-<name>` with --demo's arguments. Then one table of the demo's scores,
a column per set, and each row's spread (max - min); it is also written to <prefix>-table.md. Exits 1
if any step of any set failed (after running them all). `make test-isa` runs it with the Makefile's sets.

    .venv/bin/python benchmarks/isa_matrix.py --set native= --set "avx2=ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" \\
        --pytest "tests/methods/test_contract.py -m 'not slow'" --demo "--methods watershed"
    .venv/bin/python benchmarks/isa_matrix.py --table-only --set native= --set avx2=   # re-tabulate earlier demos
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from cellbench.runner.isa import SWITCHES

HERE = Path(__file__).parent


def parse_set(text: str) -> tuple[str, dict[str, str]]:
    """``"avx2=ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"`` -> ``("avx2", {...})``."""
    name, _, rest = text.partition("=")
    if not name.strip() or not name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"--set {text!r}: give NAME=[VAR=VALUE ...], NAME in letters, digits, - and _")
    switches = {}
    for item in shlex.split(rest):
        var, eq, value = item.partition("=")
        if not eq or var not in SWITCHES:
            raise SystemExit(f"--set {text!r}: {item!r} is not VAR=VALUE with VAR one of {', '.join(SWITCHES)}")
        switches[var] = value
    return name.strip(), switches


def set_environment(switches: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update(switches)
    return env


def step(what: str, command: list[str], env: dict[str, str]) -> tuple[int, float]:
    print(f"$ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    rc = subprocess.run(command, env=env, check=False).returncode
    seconds = time.perf_counter() - started
    print(f"-> {what}: exit {rc} in {seconds:.0f} s", flush=True)
    return rc, seconds


def score_rows(scores: list[dict], metrics: set[str]) -> dict[tuple, dict[str, float | None]]:
    """Rows of a demo summary's scores as {row key: {metric: value}}; the fields that are not ``metrics``
    (dataset, method, split, ground truth, seed ...) make the row's key."""
    rows = {}
    for s in scores:
        key = tuple((k, str(v)) for k, v in s.items() if k not in metrics)
        rows[key] = {k: v for k, v in s.items() if k in metrics}
    return rows


def spread_table(summaries: dict[str, dict], *, section: str = "scores", only_spread: bool = False) -> str:
    """A Markdown table of ``summary[section]``: one line per row and metric, a column per set, and max - min
    (with ``only_spread``, the lines whose values differ between sets, and a count of the others)."""
    # a field is a metric if a row of any set holds a float in it
    metrics = {k for s in summaries.values() for row in s.get(section, []) for k, v in row.items()
               if isinstance(v, float)}
    per_set = {name: score_rows(s.get(section, []), metrics) for name, s in summaries.items()}
    keys = list(dict.fromkeys(k for rows in per_set.values() for k in rows))
    names = list(per_set)
    varying = [f for f in dict.fromkeys(f for k in keys for f, _ in k)
               if len({dict(k).get(f) for k in keys}) > 1]
    lines = ["| " + " | ".join([*varying, "metric", *names, "spread"]) + " |",
             "| " + " | ".join(["---"] * (len(varying) + len(names) + 2)) + " |"]
    same = 0
    for key in keys:
        metrics = list(dict.fromkeys(m for rows in per_set.values() for m in rows.get(key, {})))
        for metric in metrics:
            values = [per_set[n].get(key, {}).get(metric) for n in names]
            present = [v for v in values if v is not None]
            if not present:  # a metric this row has under no set (COCO mAP of a flattened ground truth)
                continue
            spread = f"{100 * (max(present) - min(present)):.1f}" if len(present) > 1 else "n/a"
            if only_spread and len(present) == len(values) and max(present) == min(present):
                same += 1
                continue
            cells = ["n/a" if v is None else f"{100 * v:.1f}" for v in values]
            lines.append("| " + " | ".join([*(dict(key).get(f, "") for f in varying), metric, *cells, spread]) + " |")
    if only_spread:
        lines.append(f"\n{same} more lines have the same value under every set.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--set", action="append", dest="sets", default=[], metavar="NAME=[VAR=VALUE ...]",
                        help="an instruction set: a name and its switches (repeat; in order)")
    parser.add_argument("--pytest", default="", help="pytest's arguments, one string (empty: no tests)")
    parser.add_argument("--demo", default=None, help="`cellbench demo`'s arguments besides --out, one string "
                                                     "(leave the option out: no demo)")
    parser.add_argument("--prefix", default="cellbench-demo-isa", help="demo folders: <prefix>-<set name>")
    parser.add_argument("--section", default="scores",
                        help="the demo summary's list of rows to tabulate (scores: one row per seed)")
    parser.add_argument("--table-only", action="store_true", help="run nothing: tabulate the demos already there")
    args = parser.parse_args()
    sets = dict(parse_set(s) for s in args.sets)
    if not sets:
        parser.error("give at least one --set")

    failed: list[str] = []
    times: list[str] = []
    for name, switches in sets.items() if not args.table_only else ():
        env = set_environment(switches)
        print(f"\n=== instruction set {name}: {' '.join(f'{k}={v}' for k, v in switches.items()) or 'no switch'}",
              flush=True)
        rc, _ = step("instruction sets", [sys.executable, str(HERE / "isa.py"), "--name", name], env)
        if rc:
            failed.append(f"{name}: isa.py")
        if args.pytest.strip():
            rc, seconds = step(f"pytest under {name}", [sys.executable, "-m", "pytest", *shlex.split(args.pytest)], env)
            times.append(f"{name} pytest {seconds:.0f} s (exit {rc})")
            if rc:
                failed.append(f"{name}: pytest (exit {rc})")
        if args.demo is not None:
            out = f"{args.prefix}-{name}"
            rc, seconds = step(f"demo under {name}", [sys.executable, "-m", "cellbench", "demo", "--out", out,
                                                      *shlex.split(args.demo)], env)
            times.append(f"{name} demo {seconds:.0f} s (exit {rc})")
            if rc:
                failed.append(f"{name}: demo (exit {rc})")

    summaries = {}
    for name in sets:
        path = Path(f"{args.prefix}-{name}") / "demo-summary.json"
        if path.exists():
            summaries[name] = json.loads(path.read_text())
    if summaries and (args.demo is not None or args.table_only):
        Path(f"{args.prefix}-table.md").write_text(spread_table(summaries, section=args.section))
        print(f"\n=== demo {args.section} (%) per instruction set, spread = max - min; the lines that differ "
              f"(all of them: {args.prefix}-table.md)\n{spread_table(summaries, section=args.section, only_spread=True)}")
    if times:
        print("=== times: " + "; ".join(times))
    if failed:
        print("=== FAILED: " + "; ".join(failed))
        sys.exit(1)
    if not args.table_only:
        print(f"=== all steps passed under {', '.join(sets)}")


if __name__ == "__main__":
    main()
