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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (refuses 0, negatives, inf and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def warn_if_unfinished(run: Any, prog: str) -> None:
    """Tell the user (stderr) when ``run`` stopped before the steps it was asked for."""
    warning = run.unfinished_warning()
    if warning:
        print(f"{prog}: warning: {warning}", file=sys.stderr)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The training protocol's flags, shared by ``train`` and ``compare``; each one, when
    given, replaces the spec's ``[training]`` field of the same name (:func:`training_options`)."""
    from ppl_vae.spec import SELECTIONS, VALID_CRITERIA

    group = parser.add_argument_group(
        "training protocol", "validation selection and early stopping; unset flags take the "
                             "spec's [training] values")
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


TRAINING_OPTIONS = ("select", "patience", "valid_criterion", "valid_particles")
"""The :func:`add_training_options` flags, by their ``fit`` keyword and spec field name."""


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training-protocol flags that were given, as ``fit`` keywords."""
    return {name: getattr(args, name) for name in TRAINING_OPTIONS
            if getattr(args, name) is not None}
