"""``ppl-vae diagnose RUN_DIR``: did the variational posterior work?

Writes into the run directory ``diagnostics.nc`` (ArviZ InferenceData, netCDF-4),
``diagnostics.csv`` (tidy: analysis, datapoint, latent_dim, metric, value, stderr) and the
report ``diagnostics.md`` / ``diagnostics.html`` with figures under ``figures/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppl_vae.commands._args import (
    UsageError,
    add_num_points,
    add_num_samples,
    add_run_data_options,
    non_negative_int,
    positive_int,
    run_data,
    warn_if_unfinished,
)

DESCRIPTION = """Diagnose a trained run's guide q(z|x) (Yao et al. 2018): PSIS k-hat of the
importance weights log p(x,z) - log q(z|x) per datapoint; NUTS reference posteriors p(z|x)
for a few datapoints with R-hat, ESS and MCSE from ArviZ, compared with the guide;
approximation and amortization gaps (Cremer et al. 2018); KL per latent dimension and
active units. Writes RUN_DIR/diagnostics.nc, diagnostics.csv and diagnostics.md/.html."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diagnose", help="PSIS k-hat, MCMC references, gaps",
                                   description=DESCRIPTION)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (ppl-vae train)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default=None,
                        help="data split to diagnose (default: test; encoder-free models: "
                             "train, the points with stored codes)")
    add_num_points(parser, 200, "the first N datapoints of the split for PSIS k-hat and "
                                "collapse")
    parser.add_argument("--datapoints", type=int, nargs="+", default=[0, 1, 2, 3],
                        metavar="ROW", help="rows of the split given an MCMC reference and "
                                            "inference gaps (default: 0 1 2 3)")
    add_num_samples(parser)
    parser.add_argument("--chains", type=positive_int, default=4, help="NUTS chains (default: 4)")
    parser.add_argument("--draws", type=positive_int, default=1000,
                        help="NUTS draws per chain after warmup (default: 1000)")
    parser.add_argument("--warmup", type=positive_int, default=500,
                        help="NUTS warmup iterations per chain (default: 500)")
    parser.add_argument("--gap-steps", type=positive_int, default=1000,
                        help="Adam steps of the per-datapoint guide optimization "
                             "(default: 1000)")
    parser.add_argument("--gap-samples", type=positive_int, default=2000,
                        help="draws per ELBO and log p(x) estimate of the gaps (default: 2000)")
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default=None,
                        help="backend to load the run with (default: the run's)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of all draws (default: 0)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (for scripts and CI); the summary still prints")
    add_run_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.runs import OutputWriter

    with OutputWriter(args.run_dir, command="diagnose", runs=[args.run_dir]) as writer:
        return _diagnose(args, writer)


def _diagnose(args: argparse.Namespace, writer) -> int:
    import numpy as np
    import pandas as pd

    from ppl_vae import runs
    from ppl_vae.diagnostics import diagnose, inference_data
    from ppl_vae.io import atomic_write_text
    from ppl_vae.reports.pages import diagnostics_page

    run_dir = Path(args.run_dir)
    loaded = runs.load_run(run_dir, backend=args.backend).with_data(**run_data(args))
    warn_if_unfinished(loaded, args.prog)
    data = loaded.evaluation_data(args.split, max_points=args.num_points, seed=args.seed)
    if not loaded.spec.posterior.amortized and data.idx is None:
        raise UsageError("this model has no encoder; its guide exists only for training "
                         "datapoints: pass --split train")
    x = data.x
    num_points = x.shape[0]
    rows = np.asarray(args.datapoints)
    if rows.min() < 0 or rows.max() >= num_points:
        raise UsageError(f"--datapoints must be rows in 0..{num_points - 1} (within "
                         f"--num-points {num_points}); got {rows.tolist()}")
    history_path = run_dir / runs.HISTORY_FILE
    history = pd.read_csv(history_path) if history_path.exists() else None
    result = diagnose(
        loaded.vae, x, datapoints=np.arange(num_points), idx=data.idx, reference_rows=rows,
        num_samples=args.num_samples, num_chains=args.chains, num_warmup=args.warmup,
        num_draws=args.draws, gap_steps=args.gap_steps, gap_eval_samples=args.gap_samples,
        likelihood_samples=args.gap_samples, history=history, seed=args.seed,
        progress=not args.quiet)
    result.notes[:0] = data.notes

    inference_data.write_netcdf(result.inference_data(), writer.path(runs.DIAGNOSTICS_NETCDF))
    atomic_write_text(writer.path(runs.DIAGNOSTICS_TABLE), result.table().to_csv(index=False))
    title = f"Diagnostics of {run_dir.resolve().name} ({loaded.spec.name}, {data.split} split)"
    md, html = diagnostics_page(result, title).write(writer.folder, runs.DIAGNOSTICS_STEM)

    print(result.khat_summary.to_markdown(index=False, floatfmt=".3g"))
    print(f"verdict: {result.khat_verdict.level} ({result.khat_verdict.text})")
    if result.reference is not None:
        print(f"MCMC: max R-hat {result.reference.max_rhat:.4f}, "
              f"min bulk ESS {result.reference.min_ess_bulk:.0f}, "
              f"{result.reference.num_divergent} divergent")
    if result.gaps is not None:
        gaps = result.gaps.table
        print(f"gaps (mean over {len(gaps)} datapoints): amortization "
              f"{gaps['gap_amortization'].mean():.3f} nats, approximation "
              f"{gaps['gap_approximation'].mean():.3f} nats")
    for note in result.notes:
        print(f"- {note}")
    print(f"wrote {run_dir / runs.DIAGNOSTICS_NETCDF}, {run_dir / runs.DIAGNOSTICS_TABLE}, "
          f"{md}, {html}")
    return 0
