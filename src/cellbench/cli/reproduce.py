"""``cellbench reproduce NAME``: a seed paper's protocol run end to end, with its published numbers beside the run's.

The steps, each printed: find the protocol (``examples/protocols/NAME.yaml``,
see :mod:`cellbench.protocols.locate`) and check its published values against
it; apply the budget (``--budget cpu`` prints every change it makes); fetch the
datasets and weights it names through the verified downloader; run it into
``--out`` (resuming what an earlier, interrupted ``reproduce`` left there); record
the protocol, budget and published values in ``RUN/protocol.json``; write the
report, whose section "Published vs this run" compares the two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellbench.cli.run import _executor, report_failures, seed_list

__all__ = ["add_reproduce_command"]


def _reproduce(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from cellbench.protocols import (
        RunProvenance,
        apply_budget,
        fetch_requirements,
        load_protocol,
        protocol_requirements,
        write_provenance,
    )
    from cellbench.report import write_report
    from cellbench.runner import RESULTS_DB, run_experiment

    loaded = load_protocol(args.name, search=args.protocols)
    protocol, published = loaded.protocol, loaded.published
    n_values = len(published.values) if published else 0
    print(f"protocol {protocol.name}: {protocol.path}; "
          + (f"{n_values} published values in {protocol.published}" if published else "no published values beside it"))
    experiment = loaded.experiment
    if args.seeds:
        experiment = dataclasses.replace(experiment, seeds=args.seeds)
    for label, unmet in experiment.skipped.items():
        print(f"cellbench: skipping method {label!r} (if_installed): it {unmet}", file=sys.stderr)
    experiment, changes = apply_budget(experiment, args.budget, images=args.cpu_images)
    if args.budget == "paper":
        print("budget paper: the protocol as written")
    else:
        print(f"budget {args.budget}: {len(changes)} change(s) to the protocol")
        for change in changes:
            print(f"  {change.text()}")
    out = Path(args.out).expanduser() if args.out else Path("runs") / f"{protocol.name}-{args.budget}"
    provenance = RunProvenance(protocol=protocol.name, experiment_file=str(protocol.path), budget=args.budget,
                               changes=changes, published=published)
    if (out / RESULTS_DB).exists():
        write_provenance(out, provenance)  # refuses another protocol or budget before anything runs
    requirements = protocol_requirements(experiment)
    if not args.no_download:
        fetch_requirements(requirements, progress=not args.quiet, say=print)
    resume = (out / RESULTS_DB).exists()
    if resume:
        print(f"resuming the run in {out}: grid entries done before are kept")
    recorded = []

    def on_entry(_outcome) -> None:  # the run folder exists once the first entry is committed
        if not recorded:
            write_provenance(out, provenance)
            recorded.append(True)

    summary = run_experiment(
        experiment, out, executor=_executor(args), resume=resume, retry_failed=args.retry_failed,
        progress=tqdm, entry_progress=None if args.quiet else tqdm, on_entry=on_entry,
    )
    write_provenance(out, provenance)
    print(f"{summary.n_run} grid entries run, {summary.n_skipped} already done, {summary.n_failed} failed "
          f"of {summary.n_entries}, in {summary.seconds:.1f} s; results in {out / RESULTS_DB}")
    report_html = None
    if not summary.all_failed:
        report = write_report(out, out / "report", qualitative_images=args.images, overwrite=True, progress=tqdm)
        report_html = report.html
        print(f"report: {report.html} (section 'Published vs this run'; tables in {out / 'report' / 'tables'})")
    return report_failures(summary.errors, summary.n_entries, out, report_html=report_html)


def add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    from cellbench.protocols import BUDGETS, CPU_IMAGES, PROTOCOLS_ENV

    p = sub.add_parser(
        "reproduce", help="run a seed paper's protocol (examples/protocols/NAME.yaml) and compare with its numbers",
        description="Find protocol NAME, fetch its data and weights, run it resumably into --out and write the "
                    "report with its 'Published vs this run' section.")
    p.add_argument("name", help="protocol: glioma_c6, cellseg1, cellseg_18_methods, neurips22_report, "
                                "or the path of an experiment file")
    p.add_argument("--budget", choices=BUDGETS, default="paper",
                   help="paper: as written (default); cpu: first seed, each method's cpu preset schedule, every "
                        "split cut to its first images (each change is printed)")
    p.add_argument("--out", help="run folder (default runs/NAME-BUDGET); an existing one is resumed")
    p.add_argument("--protocols", metavar="DIR",
                   help=f"folder of protocols (default ${PROTOCOLS_ENV}, else the checkout's examples/protocols)")
    p.add_argument("--cpu-images", type=int, default=CPU_IMAGES, metavar="N",
                   help=f"images kept per split under --budget cpu (default {CPU_IMAGES}; more when a regime "
                        f"trains on more)")
    p.add_argument("--seeds", type=seed_list, metavar="S,S,...", help="training seeds instead of the protocol's")
    p.add_argument("--no-download", action="store_true",
                   help="fetch nothing: the data and weights must be in the cache already")
    p.add_argument("--retry-failed", action="store_true", help="when resuming, run failed grid entries again")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="as for cellbench run")
    p.add_argument("--ray-address", help="Ray cluster to join (with --executor ray)")
    p.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray")
    p.add_argument("--images", type=int, default=2, help="images per qualitative panel of the report (0: none)")
    p.add_argument("--quiet", action="store_true", help="only the grid progress bar")
    p.set_defaults(func=_reproduce)

