"""Data checks: is an array fit for a model? Every refusal is a :class:`DataError` that says
what to change."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ppl_vae.families import LIKELIHOODS, likelihood_family

EIGHT_BIT_LIKELIHOODS = tuple(name for name, cls in LIKELIHOODS.items()
                              if cls.data_kind == "eight-bit")
"""Likelihoods of 8-bit integer pixels 0..255 (exact probabilities, no dequantization)."""
LIKELIHOOD_NAMES = tuple(LIKELIHOODS)


class DataError(ValueError):
    """Data that cannot be used as given; the message says what to change."""


def check_data(
    x,
    *,
    data_shape: Sequence[int] | None = None,
    likelihood: Any = None,
    name: str = "data",
    max_value: float | None = None,
) -> np.ndarray:
    """Validate data for a model and return it as float32 ``(N, D)``.

    Parameters
    ----------
    x : array_like
        ``(N, D)`` or ``(N, *image_shape)`` numeric data.
    data_shape : sequence of int, optional
        Shape of one datapoint the model expects; only the number of values
        per datapoint must match, trailing image dimensions are flattened.
    likelihood : a likelihood family or its name, optional
        Its ``data_kind`` decides: binary data (``"bernoulli"``) must lie in ``{0, 1}``; 8-bit
        data (``"discretized-logistic"``, ``"categorical"``) must be integer intensities in
        ``0..255`` that are not all in ``[0, 1]`` (binarized or scaled data).
    name : str
        Name used in error messages.
    max_value : float, optional
        If given, values must lie in ``[0, max_value]``.

    Raises
    ------
    DataError
        With a message naming the problem and how to fix it.
    """
    family = None if likelihood is None else likelihood_family(likelihood)
    kind = None if family is None else family.data_kind
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{name} must be a numeric array, got dtype {arr.dtype}; convert it with "
            "np.asarray(x, dtype=np.float32) (strings and objects cannot be modelled)"
        )
    if arr.ndim < 2:
        raise DataError(
            f"{name} must have shape (N, D) or (N, *image_shape), got shape {arr.shape}; "
            "for a single datapoint use x[None]"
        )
    if arr.size == 0:
        raise DataError(
            f"{name} is empty (shape {arr.shape}); pass at least one datapoint with at "
            "least one value"
        )
    num = arr.shape[0]
    dim = math.prod(arr.shape[1:])
    if data_shape is not None:
        expected = math.prod(data_shape)
        if dim != expected:
            raise DataError(
                f"{name} has {dim} values per datapoint but the spec expects {expected} "
                f"(data_shape={list(data_shape)}); pass images of shape (N, {expected}) "
                "or change data_shape in the spec"
            )
    flat = np.ascontiguousarray(arr.reshape(num, dim), dtype=np.float32)

    finite = np.isfinite(flat)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise DataError(
            f"{name} contains {int(flat.size - finite.sum())} NaN or inf values in "
            f"{bad_rows.size} rows (first in row {int(bad_rows[0])}); drop those rows, "
            "e.g. x = x[np.isfinite(x).all(axis=1)], or impute them"
        )
    lo, hi = float(flat.min()), float(flat.max())
    if max_value is not None and (lo < 0 or hi > max_value):
        raise DataError(
            f"{name} has values in [{lo:g}, {hi:g}], outside [0, {max_value:g}]; rescale "
            "it to [0, 1] first, e.g. (x - x.min()) / (x.max() - x.min()), or pass "
            "RawData(values, max_value=...) with the true intensity maximum"
        )
    if kind == "binary":
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs "
                "values in {0, 1}; scale intensities into [0, 1] (divide 8-bit images by "
                "255) and binarize them, or use a Gaussian likelihood"
            )
        if not np.isin(flat, (0.0, 1.0)).all():
            raise DataError(
                f"{name} has non-binary values but the Bernoulli likelihood needs values in "
                "{0, 1}; binarize with binarization='static'|'threshold'|'dynamic', "
                "or use a Gaussian likelihood"
            )
    if kind == "eight-bit":
        _check_eight_bit(flat, lo, hi, name, family.name)
    return flat


def _check_eight_bit(flat: np.ndarray, lo: float, hi: float, name: str, likelihood: str) -> None:
    fix = (f"pass the raw 8-bit pixels; ppl_vae.data.prepare(source, likelihood={likelihood!r}) "
           "keeps them")
    if hi <= 1:
        raise DataError(
            f"{name} has all values in [{lo:g}, {hi:g}] (binarized or scaled to [0, 1]) but the "
            f"{likelihood} likelihood models 8-bit integer pixels 0..255; {fix}")
    if lo < 0 or hi > 255 or not is_integer_valued(flat):
        raise DataError(
            f"{name} has values in [{lo:g}, {hi:g}], not all integers in 0..255, but the "
            f"{likelihood} likelihood models 8-bit integer pixels; {fix}")


def is_integer_valued(values: np.ndarray) -> bool:
    return values.dtype.kind in "biu" or bool(np.all(values == np.round(values)))
