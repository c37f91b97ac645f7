"""``ppl-vae evaluate RUN_DIR``: likelihoods and model metrics of a trained run.

Writes ``RUN_DIR/metrics.csv`` (tidy: run, split, metric, value, stderr, stderr_source;
``run`` is the run id of ``run.json``; a file from before ``stderr_source`` existed is read
with that column empty; rows of other splits already there are kept, rows of the evaluated
split are replaced) and prints the headline figures (the run report's) with notes on units and
estimators. The run is read under its shared lock (:class:`~ppl_vae.runs.OutputWriter`), and
the ``checkpoint_step`` row is the step of the parameters read under it. With ``--bdmc`` it
also writes ``RUN_DIR/bdmc.csv``, the BDMC bounds on simulated data
(:mod:`ppl_vae.evaluation.bdmc`).
"""

from __future__ import annotations

import argparse

from ppl_vae.commands._args import (
    UsageError,
    add_num_points,
    add_num_samples,
    add_run_data_options,
    non_negative_int,
    positive_int,
    positive_int_list,
    run_data,
    warn_if_unfinished,
)

DESCRIPTION = """Evaluate a trained run: per-datapoint ELBO and importance-sampled log p(x)
(K particles, IWAE protocol), nats and bits/dim (dequantization offset applied), the rate
KL(q || p) in bits per image (closed form or Monte Carlo), KL per latent dimension, active
units, code sparsity, reconstruction error, nearest training neighbours of samples;
optionally AIS on a subset, a Parzen-window estimate, and BDMC: lower and upper bounds of
log p(x) on data simulated from the model, with IS measured against them (how loose the IS
figure is). A conditional VAE is evaluated given the split's labels: log p(x | c). Writes
RUN_DIR/metrics.csv (and RUN_DIR/bdmc.csv with --bdmc)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="likelihoods and metrics of a trained run",
                                   description=DESCRIPTION)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (ppl-vae train)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default=None,
                        help="data split to evaluate (default: test; encoder-free models: "
                             "train, the points with stored codes)")
    add_num_samples(parser)
    add_num_points(parser, None, "evaluate the first N datapoints of the split",
                   old=("--max-points",))
    add_run_data_options(parser)
    parser.add_argument("--ais", type=non_negative_int, default=0, metavar="N",
                        help="also run AIS on the first N datapoints (default: 0, off)")
    parser.add_argument("--ais-steps", type=positive_int, default=500,
                        help="AIS temperatures (default: 500)")
    parser.add_argument("--ais-chains", type=positive_int, default=16,
                        help="AIS chains per datapoint (default: 16)")
    parser.add_argument("--ais-start", choices=("q", "prior"), default="q",
                        help="AIS start distribution (default: q)")
    parser.add_argument("--bdmc", action="store_true",
                        help="also sandwich log p(x) between forward and reverse AIS on data "
                             "simulated from the model, with IS at --bdmc-samples K on the "
                             "same data (writes RUN_DIR/bdmc.csv)")
    parser.add_argument("--bdmc-points", type=positive_int, default=20,
                        help="simulated datapoints for --bdmc (default: 20)")
    parser.add_argument("--bdmc-temperatures", type=positive_int_list, default=(100, 1000),
                        metavar="T,T,...", help="AIS temperatures of --bdmc (default: 100,1000)")
    parser.add_argument("--bdmc-chains", type=positive_int, default=1,
                        help="AIS chains per simulated datapoint and direction (default: 1)")
    parser.add_argument("--bdmc-samples", type=positive_int_list, default=(100, 1000, 5000),
                        metavar="K,K,...",
                        help="IS particles on the simulated data (default: 100,1000,5000)")
    parser.add_argument("--budget", type=positive_int, default=None,
                        help="particle x datapoint pairs decoded at once (bounds memory)")
    parser.add_argument("--model-samples", type=non_negative_int, default=100,
                        help="model samples for the nearest-neighbour metric (0: off)")
    parser.add_argument("--parzen", action="store_true",
                        help="add a Parzen-window estimate (unreliable in high dimension)")
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default=None,
                        help="backend to evaluate with (default: the run's)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of all draws (default: 0)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (for scripts and CI); the table still prints")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.runs import OutputWriter

    with OutputWriter(args.run_dir, command="evaluate", runs=[args.run_dir]) as writer:
        return _evaluate(args, writer)


def _evaluate(args: argparse.Namespace, writer) -> int:
    import pandas as pd

    from ppl_vae.evaluation import (
        COLUMNS,
        DEFAULT_BUDGET,
        EvaluationConfig,
        evaluate_split,
        likelihood_units,
    )
    from ppl_vae.evaluation.bdmc import check_bdmc
    from ppl_vae.io import atomic_write_text
    from ppl_vae.reports.pages import headline_table
    from ppl_vae.runs import METRICS_FILE, STEP_METRIC, load_run

    loaded = load_run(args.run_dir, backend=args.backend).with_data(**run_data(args))
    warn_if_unfinished(loaded, args.prog)
    if args.bdmc:
        check_bdmc(loaded.vae)  # before anything is written
    data = loaded.evaluation_data(args.split, max_points=args.num_points, seed=args.seed)
    notes = list(data.notes)
    units = likelihood_units(loaded.spec.likelihood.name, loaded.spec.data_dim,
                             dequantized=data.splits.dequantized,
                             max_value=data.splits.max_value)
    config = EvaluationConfig(
        num_samples=args.num_samples, seed=args.seed, budget=args.budget or DEFAULT_BUDGET,
        ais_points=args.ais, ais_steps=args.ais_steps, ais_chains=args.ais_chains,
        ais_start=args.ais_start, num_model_samples=args.model_samples, parzen=args.parzen,
        progress=not args.quiet)
    name = loaded.run_id
    table, more = evaluate_split(loaded.vae, data.x, run=name, split=data.split, idx=data.idx,
                                 units=units,
                                 train=data.train if args.model_samples > 0 else None,
                                 valid=data.valid, config=config, c=data.c)
    notes += more
    table.loc[len(table)] = [name, data.split, STEP_METRIC, float(writer.step()), float("nan"),
                             ""]
    which = loaded.parameters_note()
    if which:
        notes.insert(0, which)

    path = writer.path(METRICS_FILE)
    if path.exists():
        old = pd.read_csv(path)
        if list(old.columns) == COLUMNS[:-1]:  # written before stderr_source existed
            old["stderr_source"] = ""
        if list(old.columns) != COLUMNS:
            raise UsageError(f"{path} has columns {list(old.columns)}, not {COLUMNS}; move it "
                             "away and run again")
        keep = ~((old["run"] == name) & (old["split"] == data.split))
        table = pd.DataFrame(old[keep].to_dict("records") + table.to_dict("records"),
                             columns=COLUMNS)
    atomic_write_text(path, table.to_csv(index=False))

    shown = table[table["split"] == data.split]
    print(headline_table(shown, loaded.spec.latent_dim).to_markdown(index=False))
    for note in notes:
        print(f"- {note}")
    print(f"wrote all {len(shown)} metrics of the {data.split} split (value, stderr) to {path}")
    if args.bdmc:
        _write_bdmc(loaded.vae, args, writer)
    return 0


def _write_bdmc(vae, args: argparse.Namespace, writer) -> None:
    """BDMC on simulated data: RUN_DIR/bdmc.csv, the table and its one-line reading."""
    from ppl_vae.evaluation import DEFAULT_BUDGET, bdmc, looseness_note
    from ppl_vae.io import atomic_write_text
    from ppl_vae.runs import BDMC_FILE

    result = bdmc(vae, args.bdmc_points, temperatures=args.bdmc_temperatures,
                  num_chains=args.bdmc_chains, is_samples=args.bdmc_samples,
                  budget=args.budget or DEFAULT_BUDGET, seed=args.seed)
    path = writer.path(BDMC_FILE)
    atomic_write_text(path, result.table.to_csv(index=False))
    print(result.table.to_markdown(index=False, floatfmt=".6g"))
    print(f"- {looseness_note(result.table)}")
    print(f"wrote {path}")

