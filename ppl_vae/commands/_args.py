"""What the sub-commands share: argument types, the usage error, the unfinished-run warning,
and the flags several commands take (one name and one default per meaning)."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Any

NUM_SAMPLES = 1000
"""Importance samples per datapoint, the default of every command that draws them (evaluate,
compare, diagnose): each cell of a grid pays for K, and paired differences compare models at
the same K. K = 5000 is 0.47 nats tighter on the main job at 3.1 times the cost (measured in
docs/guides/cli.md)."""


class UsageError(ValueError):
    """Command-line input that cannot work; the message says what to pass instead."""


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (refuses 0, negatives, inf and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


class _RenamedFlag(argparse.Action):
    """A flag's old name, kept (hidden) for one release: stores into the new flag's value and
    says the new name on stderr."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is now {self.new}; the old name goes "
              "in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_flag(parser: argparse.ArgumentParser, name: str, *, old: tuple[str, ...] = (),
             **kwargs: Any) -> None:
    """``parser.add_argument(name, **kwargs)``, plus each ``old`` name as a hidden alias."""
    action = parser.add_argument(name, **kwargs)
    for old_name in old:
        parser.add_argument(old_name, dest=action.dest, type=action.type,
                            action=functools.partial(_RenamedFlag, new=name),
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_num_points(parser: argparse.ArgumentParser, default: int | None, what: str, *,
                   old: tuple[str, ...] = ()) -> None:
    """``--num-points N``: the first N datapoints of a split, the one name of every command
    that takes "the first N images"; ``what`` says what the command does with them."""
    shown = "all" if default is None else default
    add_flag(parser, "--num-points", old=old, type=positive_int, default=default, metavar="N",
             help=f"{what} (default: {shown})")


def add_num_samples(parser: argparse.ArgumentParser) -> None:
    """``--num-samples K``: importance samples q(z | x) per datapoint (default
    :data:`NUM_SAMPLES`)."""
    parser.add_argument("--num-samples", type=positive_int, default=NUM_SAMPLES, metavar="K",
                        help="importance samples from q(z | x) per datapoint "
                             f"(default: {NUM_SAMPLES})")


DATASET_HELP = ("mnist5k, digits, patches8, patches16, or a path: a .npz file (arrays images "
                "and labels, see --images-key), an IDX file, or a folder of PNG/JPEG images "
                "(one sub-folder per class labels them)")


def add_dataset_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--dataset`` and the ``.npz`` array names ``--images-key`` / ``--labels-key``; ``what``
    says which data the command reads and its default."""
    parser.add_argument("--dataset", help=f"{what}: {DATASET_HELP}")
    parser.add_argument("--images-key", metavar="NAME",
                        help="the .npz array of the data (default: images, else x, else the "
                             "file's only array)")
    parser.add_argument("--labels-key", metavar="NAME",
                        help="the .npz array of the labels (default: labels, else y, else none)")


def npz_keys(args: argparse.Namespace) -> dict[str, str]:
    """The ``.npz`` array names given (``images_key``, ``labels_key``), for :func:`prepare` and
    run.json."""
    return {name: getattr(args, name) for name in ("images_key", "labels_key")
            if getattr(args, name) is not None}


def add_run_data_options(parser: argparse.ArgumentParser) -> None:
    """The dataset flags of the commands that read a run: they replace what run.json records
    (:func:`run_data`), split, binarized and seeded as in training."""
    add_dataset_options(parser, "the data the run's splits are rebuilt from, split as in "
                                "training (default: the one run.json records)")


def run_data(args: argparse.Namespace) -> dict[str, str]:
    """The run.json data settings the dataset flags replace (:meth:`Run.with_data`)."""
    return ({"source": args.dataset} if args.dataset else {}) | npz_keys(args)


def positive_int_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated integers >= 1 (``100,1000``), sorted, distinct."""
    try:
        values = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, e.g. "
                                         f"100,1000; got {text!r}") from None
    if values[0] < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers, got {text}")
    return tuple(values)


def warn_if_unfinished(run: Any, prog: str) -> None:
    """Tell the user (stderr) when ``run`` stopped before the steps it was asked for."""
    warning = run.unfinished_warning()
    if warning:
        print(f"{prog}: warning: {warning}", file=sys.stderr)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The training protocol's flags, shared by ``train`` and ``compare``; each one, when
    given, replaces the spec's ``[training]`` field of the same name (:func:`training_options`)."""
    from ppl_vae.spec import LR_SCHEDULES, SELECTIONS, VALID_CRITERIA

    group = parser.add_argument_group(
        "training protocol", "validation selection, early stopping, learning-rate schedule "
                             "and KL options; each replaces the spec's [training] field of the "
                             "same name (e.g. --lr-warmup-steps: lr_warmup_steps)")
    group.add_argument("--select", choices=SELECTIONS,
                       help="keep the parameters of the best validation evaluation or the last "
                            "ones (spec default: best-valid)")
    group.add_argument("--patience", type=non_negative_int,
                       help="stop after N validation evaluations without improvement "
                            "(0: never stop early)")
    group.add_argument("--valid-criterion", choices=VALID_CRITERIA,
                       help="the validation bound: the training estimator's own (objective), "
                            "the ELBO, or the IWAE bound")
    group.add_argument("--valid-particles", type=positive_int,
                       help="particles of the validation bound (default: --particles)")
    group.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                       help="learning-rate schedule (plateau: on the validation criterion)")
    group.add_argument("--lr-warmup-steps", type=non_negative_int,
                       help="linear learning-rate warm-up steps (warmup, cosine, exponential, "
                            "step)")
    group.add_argument("--lr-decay-steps", type=positive_int,
                       help="cosine's horizon (default: the rest of the run); steps per "
                            "--lr-decay-rate factor (exponential, step)")
    group.add_argument("--lr-decay-rate", type=positive_float,
                       help="factor per --lr-decay-steps (exponential, step)")
    group.add_argument("--lr-min", type=non_negative_float,
                       help="the floor of cosine and plateau")
    group.add_argument("--lr-plateau-factor", type=positive_float,
                       help="plateau: the factor of each reduction")
    group.add_argument("--lr-plateau-patience", type=non_negative_int,
                       help="plateau: evaluations without improvement before a reduction")
    group.add_argument("--lr-plateau-threshold", type=positive_float,
                       help="plateau: the relative improvement that counts")
    group.add_argument("--beta", type=positive_float,
                       help="weight of the KL term (beta-VAE; 1: the ELBO)")
    group.add_argument("--kl-warmup-steps", type=non_negative_int,
                       help="steps of a linear rise of the KL weight to --beta")
    group.add_argument("--kl-warmup-start", type=non_negative_float,
                       help="the KL weight the warm-up starts from (default 0)")
    group.add_argument("--free-bits", type=non_negative_float,
                       help="free bits: a floor of L nats per latent dimension on the KL term")


TRAINING_OPTIONS = ("select", "patience", "valid_criterion", "valid_particles", "lr_schedule",
                    "lr_warmup_steps", "lr_decay_steps", "lr_decay_rate", "lr_min",
                    "lr_plateau_factor", "lr_plateau_patience", "lr_plateau_threshold", "beta",
                    "kl_warmup_steps", "kl_warmup_start", "free_bits")
"""The :func:`add_training_options` flags, by the spec's ``[training]`` field they replace."""


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training-protocol flags that were given, as ``[training]`` field values
    (``--patience 0``: no patience)."""
    given = {name: getattr(args, name) for name in TRAINING_OPTIONS
             if getattr(args, name) is not None}
    if given.get("patience") == 0:
        given["patience"] = None
    return given
