"""``ppl-vae train SPEC``: train a model of the zoo (or a spec file) and keep a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppl_vae.commands._args import (
    add_dataset_options,
    add_training_options,
    non_negative_int,
    npz_keys,
    positive_float,
    positive_int,
    training_options,
)
from ppl_vae.estimators import estimator_names
from ppl_vae.models import BACKENDS

OPTIMIZERS = ("adam", "clipped-adam")  # ppl_vae.training.OPTIMIZERS, without importing it
DEVICES = ("auto", "cpu", "cuda")
DIVERGENCE_FACTOR = 100.0  # ppl_vae.training.loop.DIVERGENCE_FACTOR, without importing it


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a VAE by SVI and write a run directory",
        description="Train a VAE by stochastic variational inference. Unset options take the "
                    "spec's [training] values. Writes runs/NAME-BACKEND/ (or --out: spec, "
                    "run.json, parameters, history.csv, checkpoints/, training_curves.png).")
    parser.add_argument("spec", help="spec file (models/NAME.toml) or zoo model name")
    parser.add_argument("--backend", choices=BACKENDS, default="pyro")
    add_dataset_options(parser, "the data (default: the spec's [training] dataset)")
    parser.add_argument("--binarization", choices=("static", "threshold", "dynamic", "none"),
                        help="for Bernoulli likelihoods ('none': the data are binary already)")
    parser.add_argument("--dequantize", action="store_true",
                        help="uniform dequantization (Gaussian likelihoods)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="number of SVI steps")
    length.add_argument("--epochs", type=positive_int,
                        help="number of epochs (N // batch-size steps each)")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float, help="learning rate (finite, > 0)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--estimator", choices=estimator_names(), metavar="ESTIMATOR",
                        help="gradient estimator (default: the spec's): "
                             f"{', '.join(estimator_names())}")
    parser.add_argument("--particles", type=positive_int,
                        help="Monte Carlo particles (K for iwae)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="training seed (weights, order, draws)")
    parser.add_argument("--data-seed", type=non_negative_int, default=0,
                        help="seed of the split")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--out", type=Path, help="run directory (default runs/SPEC-BACKEND)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out; the old run stays untouched until the "
                             "new one has written its first checkpoint")
    parser.add_argument("--checkpoint-every", type=positive_int,
                        help="steps between checkpoints")
    parser.add_argument("--eval-every", type=positive_int, help="steps between validation losses")
    parser.add_argument("--divergence-factor", type=positive_float, default=DIVERGENCE_FACTOR,
                        help="stop when a step's loss exceeds m + F * max(|m|, 1) nats, m the "
                             f"lowest loss so far (default F = {DIVERGENCE_FACTOR:g})")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (for scripts and CI); the summary still prints")
    add_training_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.data import binarization_setting, prepare
    from ppl_vae.models import build, load_spec
    from ppl_vae.runs import contained
    from ppl_vae.training import fit

    spec = load_spec(args.spec).with_training(**training_options(args))
    data_config = {"source": args.dataset or spec.training.dataset,
                   "binarization": binarization_setting(spec.likelihood.name, args.binarization,
                                                        spec.training.binarization),
                   "dequantize": args.dequantize, "fractions": [0.8, 0.1, 0.1],
                   "seed": args.data_seed, **npz_keys(args)}
    splits = prepare(data_config["source"], **npz_keys(args), likelihood=spec.likelihood.name,
                     data_shape=spec.data_shape, binarization=data_config["binarization"],
                     dequantize=args.dequantize, fractions=tuple(data_config["fractions"]),
                     seed=args.data_seed)
    num_data = None if spec.posterior.amortized else len(splits.train)
    vae = build(spec, args.backend, seed=args.seed, num_data=num_data)
    out = args.out or contained("runs", f"{spec.name}-{args.backend}")
    result = fit(vae, splits, num_steps=args.steps, num_epochs=args.epochs,
                 batch_size=args.batch_size, optimizer=args.optimizer,
                 learning_rate=args.lr, estimator=args.estimator,
                 num_particles=args.particles, seed=args.seed, eval_every=args.eval_every,
                 out_dir=out, checkpoint_every=args.checkpoint_every, resume=args.resume,
                 overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                 data_config=data_config, divergence_factor=args.divergence_factor)
    _write_curves(result, spec.name)
    print(_summary(result))
    return 0


def _write_curves(result, name: str) -> None:
    from ppl_vae.reports.figures import save_figure, training_curves
    from ppl_vae.runs import CURVES_FILE

    save_figure(result.run_dir / CURVES_FILE,
                training_curves(result.history, title=f"{name} ({result.vae.backend})"))


def _summary(result) -> str:
    history = result.history
    valid = history[history["split"] == "valid"]
    train = history[history["split"] == "train"]
    selection = result.selection
    lines = [f"trained {result.num_steps} steps in {result.seconds:.1f} s -> {result.run_dir}"]
    if selection["stopped_early"]:
        lines.append(f"  stopped early: {selection['patience']} validation evaluations without "
                     "improvement")
    if len(train):
        last_epoch = train[train["epoch"] == train["epoch"].max()]
        lines.append(f"  train loss (last epoch mean): {last_epoch['loss'].mean():.2f} nats")
    if len(valid):
        lines.append(f"  validation {selection['criterion']} (last): "
                     f"{-valid['loss'].iloc[-1]:.2f} nats per datapoint")
    if selection["best_valid_step"] is not None:
        lines.append(f"  best validation {selection['criterion']}: "
                     f"{-selection['best_valid_loss']:.2f} at step {selection['best_valid_step']}")
    lines.append(f"  kept the parameters of step {selection['step']} (select = "
                 f"{selection['select']})")
    return "\n".join(lines)
