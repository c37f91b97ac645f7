"""Training data for :func:`ppl_vae.training.fit`: checked once, then one fixed order per epoch.

The minibatch order of epoch ``e`` is a permutation drawn from
``np.random.default_rng([seed, e, 0])`` and a dynamic binarization from
``np.random.default_rng([seed, e, 1])``: both depend only on the seed and the epoch index, so a
resumed run and the benchmark's hand-written loops see exactly the batches of an uninterrupted
run without any saved state. An epoch has ``N // B`` full minibatches; the ``N mod B`` points left
over are a fresh random set each epoch (``lax.scan`` needs equal shapes, and every point is still
visited with equal probability).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppl_vae import data as data_module
from ppl_vae.data import DataError, Splits
from ppl_vae.models.conditioning import check_labels

VALID_BINARIZATION_SEED = 0
"""Seed of the one binarization of grey-level validation data, the same for every training seed
so that runs with different seeds are scored on the same binary images."""


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Checked float32 ``(N, D)`` arrays and how to draw each epoch's training set.

    ``train`` holds grey levels when ``dynamic`` is True (dynamic binarization) and final
    values otherwise; ``valid`` is final (binarized once if needed) or None. A conditioned
    spec's class labels (int64 ``(N,)``) ride along in ``train_labels`` / ``valid_labels``,
    row for row, so a minibatch's indices pick its labels too; None otherwise.
    """

    train: np.ndarray
    valid: np.ndarray | None
    dynamic: bool
    seed: int
    train_labels: np.ndarray | None = None
    valid_labels: np.ndarray | None = None

    @property
    def num_data(self) -> int:
        return int(self.train.shape[0])

    def epoch_train(self, epoch: int) -> np.ndarray:
        """The training array of epoch ``epoch``: a fresh Bernoulli draw when dynamic."""
        if not self.dynamic:
            return self.train
        rng = np.random.default_rng([self.seed, epoch, 1])
        return data_module.binarize_dynamic(self.train, rng)

    def fingerprint(self) -> str:
        """SHA-256 of the training array (shape, dtype and bytes), the binarization mode and
        the training labels where the model reads them."""
        digest = hashlib.sha256(f"{self.train.shape}{self.train.dtype}{self.dynamic}".encode())
        digest.update(self.train.tobytes())
        if self.train_labels is not None:
            digest.update(self.train_labels.tobytes())
        return digest.hexdigest()


def prepare_training_data(spec: Any, data: Any, validation_data: Any = None, *,
                          seed: int = 0) -> TrainingData:
    """Check ``data`` (an array or :class:`~ppl_vae.data.Splits`) against ``spec``.

    Raises :class:`~ppl_vae.data.DataError` for a wrong number of values per datapoint, NaN or
    infinite values, and non-binary data under a Bernoulli likelihood (prepare the data with
    ``ppl_vae.data.prepare(..., binarization="static" | "threshold" | "dynamic")``), and for
    a conditioned spec without class labels (they come with :class:`~ppl_vae.data.Splits`).
    """
    likelihood = spec.likelihood
    dynamic = False
    if isinstance(data, Splits):
        if validation_data is not None:
            raise ValueError("data is a Splits, which brings its own validation split; pass "
                             "validation_data only with a plain array")
        dynamic = data.dynamic_binarization
        train, valid = data.train, data.valid
        name = f"{data.name} train split"
    else:
        train, valid = data, validation_data
        name = "data"
    if dynamic and likelihood.data_kind != "binary":
        raise DataError(f"the splits ask for dynamic binarization but spec {spec.name!r} has a "
                        f"{spec.likelihood.name} likelihood; prepare the data with that likelihood")
    train = data_module.check_data(train, data_shape=spec.data_shape, name=name,
                                   likelihood=None if dynamic else likelihood,
                                   max_value=1.0 if dynamic else None)
    if valid is not None and len(valid) > 0:
        valid = data_module.check_data(valid, data_shape=spec.data_shape,
                                       name="validation data",
                                       likelihood=None if dynamic else likelihood,
                                       max_value=1.0 if dynamic else None)
        if dynamic:
            valid = data_module.binarize_static(valid, VALID_BINARIZATION_SEED)
    else:
        valid = None
    train_labels, valid_labels = _labels(spec, data, train, valid)
    return TrainingData(train=train, valid=valid, dynamic=dynamic, seed=seed,
                        train_labels=train_labels, valid_labels=valid_labels)


def _labels(spec: Any, data: Any, train: np.ndarray, valid: np.ndarray | None
            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The train and valid labels of a conditioned spec (None, None for others), checked."""
    if spec.condition is None:
        return None, None
    where = f"{data.name} train split" if isinstance(data, Splits) else "a plain array"
    if not isinstance(data, Splits) or data.train_labels is None:
        raise DataError(f"spec {spec.name!r} is conditioned on a class label ([condition]) but "
                        f"{where} has no labels; train on a labelled dataset (mnist5k, digits) "
                        "or pass ppl_vae.data.prepare(x, labels=y, likelihood=...) as the data")
    train_labels = check_labels(spec, data.train_labels, len(train), "training labels")
    valid_labels = None if valid is None else check_labels(spec, data.valid_labels, len(valid),
                                                           "validation labels")
    return train_labels, valid_labels


def steps_per_epoch(num_data: int, batch_size: int) -> int:
    """Full minibatches per epoch, ``N // B``; a batch larger than the data is an error."""
    if not (isinstance(batch_size, int | np.integer) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size > num_data:
        raise DataError(f"batch_size {batch_size} is larger than the {num_data} training "
                        f"points; use batch_size <= {num_data}")
    return num_data // batch_size


def epoch_order(seed: int, epoch: int, num_data: int, batch_size: int) -> np.ndarray:
    """Datapoint indices of every minibatch of epoch ``epoch``, shape ``(N // B, B)``."""
    steps = steps_per_epoch(num_data, batch_size)
    perm = np.random.default_rng([seed, epoch, 0]).permutation(num_data)
    return perm[: steps * batch_size].reshape(steps, batch_size)
