"""What the sub-commands share: argument types, the usage error, the unfinished-run warning."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any


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
