"""``ppl-vae compare SPEC...``: the posterior × prior grid over seeds, on a local pool or Ray.

Writes OUT/table.csv, summary.csv, paired.csv, paired_seeds.csv, failures.csv, the report
OUT/report.md / .html and one run directory per cell under OUT/cells/ (see
:mod:`ppl_vae.compare.grid`), and OUT/compare.json, the marker that the folder is a grid's:
a folder holding other files is refused unless ``--overwrite``. Re-running with the same
settings skips finished cells.
"""

from __future__ import annotations

import argparse
import sys
import time

from ppl_vae.commands._args import (
    add_dataset_options,
    add_num_points,
    add_num_samples,
    add_training_options,
    npz_keys,
    positive_float,
    positive_int,
    training_options,
)

DESCRIPTION = """Train each spec with each seed on the same split and budget, evaluate every
model on the test split (ELBO, importance-sampled log p(x) with K particles, bits/dim,
rate in bits, active units, sparsity, reconstruction error, PSIS k-hat, sample quality by a
classifier, train seconds) and write a tidy table, a summary (mean ± standard error over
seeds, best per metric) and paired per-datapoint log p(x) differences against the baseline
(the first spec unless --baseline), with a report. Cells run on a local process pool (one
thread per worker) or as Ray tasks; finished cells are kept and skipped on a re-run."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="the posterior x prior grid over seeds",
                                   description=DESCRIPTION)
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="spec files (models/NAME.toml) or zoo model names")
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    add_dataset_options(parser, "the data of every cell (default: mnist5k)")
    parser.add_argument("--seeds", type=positive_int, default=3,
                        help="train seeds 0..N-1 for every spec (default: 3)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="SVI steps per cell")
    length.add_argument("--epochs", type=positive_int, help="epochs per cell")
    parser.add_argument("--batch-size", type=positive_int)
    add_num_samples(parser)
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="the split the cells are evaluated on: choose models on 'valid', "
                             "report the chosen one on 'test' once (default: test)")
    add_num_points(parser, None, "evaluate every cell on the first N images of --split",
                   old=("--eval-points",))
    parser.add_argument("--ais-steps", type=positive_int, default=200,
                        help="AIS temperatures for encoder-free models (default: 200)")
    parser.add_argument("--baseline", help="spec name the paired differences are against "
                                           "(default: the first spec)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="local processes, or CPUs of a local Ray (default: all cores)")
    parser.add_argument("--address", help="a running Ray cluster (with --executor ray)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where each cell trains; cuda asks Ray for --gpus-per-cell GPUs")
    parser.add_argument("--cpus-per-cell", type=positive_int, default=1,
                        help="CPU threads of each cell (Ray: CPUs asked per task; default: 1)")
    parser.add_argument("--gpus-per-cell", type=positive_float, default=None,
                        help="GPUs asked of Ray per cell with --device cuda, fractions share "
                             "a GPU (default: 1)")
    parser.add_argument("--out", default="compare",
                        help="a local output folder (default: ./compare)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write the grid into a folder holding other files (they are "
                             "kept; same-named tables and reports are replaced)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_training_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.compare import make_executor, plan, run_grid, write_grid
    from ppl_vae.compare.grid import check_out
    from ppl_vae.data import BUILTIN_DATASETS, load
    from ppl_vae.spec import SpecError

    def fail(message: str) -> int:
        print(f"ppl-vae compare: error: {message}", file=sys.stderr)
        return 2

    if args.gpus_per_cell is not None and args.device != "cuda":
        return fail("--gpus-per-cell is for --device cuda")
    gpus = (1.0 if args.gpus_per_cell is None else args.gpus_per_cell) \
        if args.device == "cuda" and args.executor == "ray" else 0.0
    try:
        out = check_out(args.out, overwrite=args.overwrite)
        # the cluster first: an address that does not answer ends before the data is hashed
        executor = make_executor(args.executor, workers=args.workers, address=args.address,
                                 cpus_per_cell=args.cpus_per_cell, gpus_per_cell=gpus)
        if args.dataset is not None and args.dataset.lower() not in BUILTIN_DATASETS:
            load(args.dataset, **npz_keys(args))  # a bad file fails here, not in every cell
        cells = plan(args.specs, range(args.seeds), backend=args.backend,
                     dataset=args.dataset or "mnist5k", **npz_keys(args),
                     num_steps=args.steps, num_epochs=args.epochs, batch_size=args.batch_size,
                     num_samples=args.num_samples, eval_points=args.num_points,
                     ais_steps=args.ais_steps, split=args.split, device=args.device,
                     training=training_options(args))
    except (SpecError, ValueError, ImportError, ConnectionError) as err:
        return fail(str(err))
    names = [c.spec_name for c in cells]
    if args.baseline is not None and args.baseline not in names:
        return fail(f"--baseline {args.baseline!r} is not one of the specs "
                    f"({', '.join(dict.fromkeys(names))})")
    start = time.perf_counter()
    result = run_grid(cells, out, executor, baseline=args.baseline,
                      progress=None if args.quiet else print, bar=True,
                      overwrite=args.overwrite)
    result.settings["wall_seconds"] = time.perf_counter() - start
    result.settings["executor"] = args.executor
    try:
        paths = write_grid(result, out, cells=cells)
    except ValueError as err:
        return fail(str(err))
    if not args.quiet:
        print(_wide(result.summary).to_markdown(index=False))
        print(_caption())
        print(f"wall time {result.settings['wall_seconds']:.1f} s ({len(result.ran)} cells run, "
              f"{len(result.skipped)} already done) on the {args.executor} executor; wrote "
              f"{len(paths)} files to {out}")
    if len(result.failures):
        print(f"ppl-vae compare: {len(result.failures)} cells failed twice; see "
              f"{out / 'failures.csv'}", file=sys.stderr)
        return 1
    return 0


def _wide(summary):
    from ppl_vae.reports.pages import summary_wide

    return summary_wide(summary, marker="*")


def _caption() -> str:
    from ppl_vae.reports.pages import SUMMARY_CAPTION

    return SUMMARY_CAPTION.format(marker="*")
