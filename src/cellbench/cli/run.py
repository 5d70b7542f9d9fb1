"""``cellbench run`` (an experiment file -> a run folder) and ``cellbench report`` (a run -> HTML, CSV, PNG)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from cellbench.errors import DataError

__all__ = ["add_run_commands", "report_failures", "seed_list"]


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2``: different integers, comma-separated."""
    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"need one or more different seeds, got {text!r}")
    return seeds


def _data_paths(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DataError(f"--data takes NAME=PATH, got {item!r}")
        out[name] = path
    return out


def _executor(args: argparse.Namespace):
    from cellbench.runner import LocalExecutor, RayExecutor

    if args.executor == "ray":
        return RayExecutor(address=args.ray_address, num_cpus=args.ray_cpus)
    if args.ray_address or args.ray_cpus:
        raise DataError("--ray-address / --ray-cpus need --executor ray")
    return LocalExecutor()


def report_failures(errors: Sequence[tuple[str, str]], n_entries: int, run_dir: Path, *,
                    report_html: str | Path | None = None) -> int:
    """Print what failed (last, so it is what a user sees) and return the exit status.

    ``errors`` holds (grid entry label, first line of its error). The status is
    1 when every grid entry of the run failed (nothing to report), else 0.
    """
    if not errors:
        return 0
    print(f"{len(errors)} of {n_entries} grid entries failed:", file=sys.stderr)
    for label, first_line in errors:
        print(f"  {label}: {first_line}", file=sys.stderr)
    where = f"the report's 'Failed grid entries' section ({report_html}) and " if report_html else ""
    print(f"full tracebacks: {where}{run_dir / 'results.sqlite'} (table entries, column error); "
          f"rerun them with --resume --retry-failed", file=sys.stderr)
    if len(errors) == n_entries:
        print("cellbench: error: every grid entry failed; there are no results", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cellbench.runner import load_experiment, run_experiment

    experiment = load_experiment(args.experiment, data_paths=_data_paths(args.data))
    if args.seeds:
        experiment = dataclasses.replace(experiment, seeds=args.seeds)
    for label, unmet in experiment.skipped.items():
        print(f"cellbench: skipping method {label!r} (if_installed): it {unmet}", file=sys.stderr)
    out = Path(args.out).expanduser() if args.out else Path("runs") / experiment.name
    summary = run_experiment(
        experiment, out, executor=_executor(args), resume=args.resume, retry_failed=args.retry_failed,
        progress=tqdm, entry_progress=None if args.quiet else tqdm,
    )
    print(f"{summary.n_run} grid entries run, {summary.n_skipped} already done, {summary.n_failed} failed "
          f"of {summary.n_entries}, in {summary.seconds:.1f} s; results in {out / 'results.sqlite'}")
    if not summary.all_failed:
        print(f"next: cellbench report {out} --out {out / 'report'}")
    return report_failures(summary.errors, summary.n_entries, out)


def _report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cellbench.report import write_report

    out = Path(args.out).expanduser() if args.out else Path(args.run).expanduser() / "report"
    summary = write_report(Path(args.run).expanduser(), out, qualitative_images=args.images, overwrite=args.overwrite, progress=tqdm)
    print(f"report: {summary.html} ({len(summary.tables)} tables as CSV in {out / 'tables'}, "
          f"{len(summary.figures)} figures)")
    return 0


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run every grid entry of a benchmark experiment (YAML), resumably")
    run.add_argument("experiment", help="experiment YAML file (see examples/)")
    run.add_argument("--out", help="run folder (default runs/<experiment name>)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: in this process (default); ray: grid entries as Ray tasks (cellbench[ray])")
    run.add_argument("--ray-address", help="Ray cluster to join (ray.init address, e.g. auto); default a local Ray")
    run.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out; nothing done is redone")
    run.add_argument("--retry-failed", action="store_true", help="with --resume: run failed grid entries again")
    run.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                     help="path of dataset NAME instead of the file's (repeatable)")
    run.add_argument("--seeds", type=seed_list, metavar="S,S,...",
                     help="training seeds instead of the file's (e.g. 0,1,2: each trained model three times, "
                          "scores as mean ± sd); give the same with --resume")
    run.add_argument("--quiet", action="store_true", help="only the grid progress bar")
    run.set_defaults(func=_run)

    report = sub.add_parser("report", help="tables, figures and report.html of a run folder")
    report.add_argument("run", help="run folder (holding results.sqlite)")
    report.add_argument("--out", help="report folder (default RUN/report)")
    report.add_argument("--images", type=int, default=2, help="images per qualitative panel (0: none; default 2)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    report.set_defaults(func=_report)
