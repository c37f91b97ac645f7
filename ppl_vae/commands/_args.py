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
