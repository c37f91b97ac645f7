"""``ppl-vae variance TARGET...``: the gradient-variance study of runs or specs, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppl_vae.commands._args import (
    UsageError,
    add_dataset_options,
    non_negative_int,
    npz_keys,
    positive_int,
    warn_if_unfinished,
)
from ppl_vae.models import BACKENDS

DEFAULT_ESTIMATORS = "reparam,analytic-kl,score,score-baseline,stl,iwae,vimco,dreg"
DEFAULT_PARTICLES = "1,5"  # ppl_vae.variance.DEFAULT_PARTICLES, without importing it
DEFAULT_DRAWS = 200  # ppl_vae.variance.DEFAULT_DRAWS


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    from ppl_vae.estimators import estimator_names

    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in estimator_names()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown estimator(s) {unknown or text!r}; choose "
                                         f"from {', '.join(estimator_names())}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "variance", help="gradient variance of ELBO estimators, with a report",
        description="Draw N gradient estimates at fixed parameters for each estimator and "
                    "number of particles, per parameter group (encoder, decoder, prior, ...), "
                    "at a run's checkpoints or a spec's initialisation; optionally train with "
                    "each estimator. Writes groups.csv, params.csv, ratios.csv, training.csv, "
                    "skipped.csv and report.md / report.html. Several targets (e.g. "
                    "masked_laplace masked_relaxed_laplace) compare posterior families.")
    parser.add_argument("targets", nargs="+", metavar="TARGET",
                        help="run directory, spec file (models/NAME.toml) or zoo model name")
    parser.add_argument("--estimators", type=_names, default=_names(DEFAULT_ESTIMATORS),
                        help=f"comma-separated (default {DEFAULT_ESTIMATORS})")
    parser.add_argument("--particles", type=_ints, default=_ints(DEFAULT_PARTICLES),
                        help="comma-separated numbers of particles K (default "
                             f"{DEFAULT_PARTICLES}; K = 50 costs about 20 times K = 1)")
    parser.add_argument("--draws", type=positive_int, default=DEFAULT_DRAWS,
                        help=f"gradient draws N >= 2 per configuration (default {DEFAULT_DRAWS}:"
                             " variances to about 10 %%)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="default: a run's own backend; numpyro for specs")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    add_dataset_options(parser, "the data of spec targets (default: the spec's [training] "
                                "dataset; a run brings its own)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds the batch and the draws")
    parser.add_argument("--train-steps", type=non_negative_int, default=0,
                        help="also train with each estimator for this many steps (default 0)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default RUN_DIR/variance, or variance-NAME)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that holds files ppl-vae did not write "
                             "(files of the same names are replaced)")
    parser.add_argument("--quiet", action="store_true",
                        help="no cost line, progress bar or progress lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.runs import OutputWriter, is_run

    if args.draws < 2:
        raise UsageError(f"--draws must be >= 2 (a variance needs two draws), got {args.draws}")
    if npz_keys(args) and args.dataset is None:
        raise UsageError("--images-key and --labels-key name arrays of the --dataset .npz "
                         "file; pass --dataset FILE.npz as well")
    out = args.out or _default_out(args.targets)
    with OutputWriter(out, command="variance", overwrite=args.overwrite,
                      runs=[source for source in args.targets if is_run(source)]):
        return _study(args, out)


def _default_out(targets: list[str]) -> Path:
    """RUN_DIR/variance for a first target that is a run, else ./variance-NAME-NAME..."""
    from ppl_vae.models import load_spec
    from ppl_vae.runs import VARIANCE_DIR, contained, is_run

    first = Path(targets[0])
    if is_run(first):
        return contained(first, VARIANCE_DIR)
    names = [Path(t).resolve().name if is_run(t) else load_spec(t).name for t in targets]
    return contained(Path.cwd(), f"variance-{'-'.join(names)}")


def _study(args: argparse.Namespace, out: Path) -> int:
    from ppl_vae.data import prepare
    from ppl_vae.models import load_spec
    from ppl_vae.models.memory import check_particles_fit
    from ppl_vae.runs import is_run, read_run
    from ppl_vae.variance import load_target, run_study, study_cost, write_study

    targets = []
    for source in args.targets:
        data = None
        if is_run(source):
            warn_if_unfinished(read_run(source, check_files=False), args.prog)
        elif args.dataset is not None:
            spec = load_spec(source)
            data = prepare(args.dataset, **npz_keys(args), likelihood=spec.likelihood.name,
                           data_shape=spec.data_shape, seed=args.seed)
        targets.append(load_target(source, args.backend, batch_size=args.batch_size,
                                   data=data, seed=args.seed))
        check_particles_fit(targets[-1].vae.spec, max(args.particles), args.batch_size)
    if not args.quiet:
        print("variance: " + study_cost(targets, estimators=args.estimators,
                                        particles=args.particles, num_draws=args.draws,
                                        train_steps=args.train_steps), flush=True)
    result = run_study(targets, estimators=args.estimators, particles=args.particles,
                       num_draws=args.draws, seed=args.seed, train_steps=args.train_steps,
                       progress=not args.quiet)
    paths = write_study(result, out)
    if not args.quiet:
        print(f"wrote {len(paths)} files to {out} (report: {out / 'report.html'})")
    return 0
