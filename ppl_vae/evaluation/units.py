r"""Units of a log-likelihood: nats per image, bits per dimension, and dequantization.

bits/dim = −log p(x) / (D ln 2). A continuous density on uniformly dequantized 8-bit data
y = (x + u) / 256 bounds the probability of the discrete image (Theis et al. 2015):

.. math:: \log P(x) \ge E_u[\log p(y)] - D \log 256,

so the offset D log(max_value + 1) (:func:`ppl_vae.data.dequantization_offset_nats`) is
subtracted before reporting. A density on data that was *not* dequantized has no such
reading (it can grow without bound on a discrete set) and is reported as a density only.

References
----------
Theis, L., van den Oord, A. & Bethge, M. (2016). A note on the evaluation of generative
models. ICLR (arXiv:1511.01844).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppl_vae.data import dequantization_offset_nats
from ppl_vae.families import likelihood_family

__all__ = ["LikelihoodUnits", "bits_per_dim", "likelihood_units"]


def bits_per_dim(log_px: Any, data_dim: int) -> np.ndarray:
    """−log p(x) / (D ln 2): nats per image to bits per dimension."""
    if not (isinstance(data_dim, int | np.integer) and data_dim >= 1):
        raise ValueError(f"data_dim must be a positive integer, got {data_dim!r}")
    return -np.asarray(log_px, dtype=np.float64) / (data_dim * math.log(2.0))


@dataclass(frozen=True)
class LikelihoodUnits:
    """How a model's log-density maps to a log-probability of the data as stored.

    ``log P(x) = log p(x) − offset_nats``; ``discrete`` says whether the result is a
    probability of discrete data (comparable across models and papers); ``note`` states
    the convention in words for reports.
    """

    data_dim: int
    offset_nats: float
    discrete: bool
    note: str

    def nats(self, log_px: Any) -> np.ndarray:
        """Negative log-likelihood in nats per datapoint, offset applied."""
        return -(np.asarray(log_px, dtype=np.float64) - self.offset_nats)

    def bits_per_dim(self, log_px: Any) -> np.ndarray:
        """Negative log-likelihood in bits per dimension, offset applied."""
        return bits_per_dim(np.asarray(log_px, dtype=np.float64) - self.offset_nats,
                           self.data_dim)


def likelihood_units(likelihood: Any, data_dim: int, *, dequantized: bool = False,
                     max_value: float | None = None) -> LikelihoodUnits:
    """The units convention for a likelihood family and how the data were prepared.

    Parameters
    ----------
    likelihood : a likelihood family or its name; its ``data_kind`` decides: binary
        (``"bernoulli"``: a probability of binary data, no offset), eight-bit
        (``"discretized-logistic"``, ``"categorical"``: exact probabilities of the integer
        pixels, no offset) or continuous (``"gaussian"``: a density).
    data_dim : D, values per datapoint.
    dequantized : the data are uniformly dequantized integer intensities.
    max_value : the intensity maximum before scaling (255 for 8-bit), needed when
        ``dequantized``; see :class:`ppl_vae.data.Splits`.
    """
    kind = likelihood_family(likelihood).data_kind
    if kind == "binary":
        return LikelihoodUnits(data_dim, 0.0, True,
                               "log-probability of binary data; nats per image and bits/dim "
                               "need no offset")
    if kind == "eight-bit":
        return LikelihoodUnits(data_dim, 0.0, True,
                               "log-probability of the 8-bit pixels (256 levels per value); "
                               "nats per image and bits/dim need no offset")
    if dequantized:
        if max_value is None:
            raise ValueError("dequantized data need max_value (e.g. 255 for 8-bit images) "
                             "for the offset D·log(max_value + 1)")
        offset = dequantization_offset_nats(data_dim, max_value)
        return LikelihoodUnits(
            data_dim, offset, True,
            f"continuous density on uniformly dequantized data in [0, 1); "
            f"{offset:.2f} nats = D·log({max_value:g} + 1) subtracted, giving a lower bound "
            "on the log-probability of the discrete data (Theis et al. 2015)")
    return LikelihoodUnits(
        data_dim, 0.0, False,
        "continuous log-density of data that were not dequantized: not a probability of the "
        "discrete data, not comparable to discrete likelihoods or published bits/dim; prepare "
        "the data with dequantize=True for that")
