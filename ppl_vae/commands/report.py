"""``ppl-vae report RUN_DIR``: render the run's tables and figures into report.md / .html."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppl_vae.commands._args import warn_if_unfinished


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="render a run's tables and figures into report.md and report.html",
        description="Collect what train, evaluate, sample, diagnose and variance wrote into a "
                    "run directory into RUN_DIR/report.md and a self-contained report.html. "
                    "Reads tables only; run the jobs first.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.reports.pages import write_run_report
    from ppl_vae.runs import OutputWriter, read_run

    with OutputWriter(args.run_dir, command="report", runs=[args.run_dir]):
        warn_if_unfinished(read_run(args.run_dir), args.prog)
        md, html = write_run_report(args.run_dir)
    print(f"wrote {md} and {html}")
    return 0
