r"""Likelihood families p(x | z): Bernoulli (binary data), Gaussian, and the 8-bit
discretized logistic mixture and 256-way categorical.

Capability flags that data preparation, checks and units read (no family names elsewhere):
``data_kind`` — ``"binary"`` (values in {0, 1}), ``"continuous"`` (real values) or
``"eight-bit"`` (integers 0..255, exact probabilities); ``data_range`` — the bounds of the
data, or None; ``input_scale`` — what the encoder multiplies the data by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ppl_vae.families.base import INV_SOFTPLUS_ONE, check_count, positive


@dataclass(frozen=True)
class Bernoulli:
    """p(x | z) = ∏ Bernoulli(x_d; sigmoid(f(z)_d)); data must be binary."""

    name: ClassVar[str] = "bernoulli"
    data_kind: ClassVar[str] = "binary"
    outputs_per_value: ClassVar[int] = 1
    input_scale: ClassVar[float] = 1.0
    data_range: ClassVar[tuple[float, float] | None] = (0.0, 1.0)

    def init_params(self) -> dict[str, np.ndarray]:
        return {}

    def distribution(self, ops: Any, params: dict, out: Any, floor: float) -> Any:
        return ops.dist.Bernoulli(logits=out).to_event(1)

    def log_density(self, ops: Any, params: dict, out: Any, floor: float, x: Any) -> Any:
        r"""log p(x | z) from the logits l = f(z), summed over pixels, in one expression:

        .. math:: \sum_d x_d l_d - \mathrm{softplus}(l_d)

        (= ``distribution(...).log_prob(x)`` for binary x; one pass where torch's
        ``binary_cross_entropy_with_logits`` takes several). Importance sampling evaluates
        it K times per datapoint.
        """
        return ops.sum(x * out - ops.softplus(out), (-1,))


@dataclass(frozen=True)
class Gaussian:
    """p(x | z) = N(x; f(z), σ² I) with a fixed σ (``scale = 0.1``) or a learned one
    (``scale = "learned"``: σ = softplus(ρ) + min_scale, one global value).

    Attributes
    ----------
    scale : a fixed σ > 0, or ``"learned"`` (one global σ = softplus(ρ) + min_scale).
    min_scale : the floor added to a learned σ.
    """

    name: ClassVar[str] = "gaussian"
    data_kind: ClassVar[str] = "continuous"
    outputs_per_value: ClassVar[int] = 1
    input_scale: ClassVar[float] = 1.0
    data_range: ClassVar[tuple[float, float] | None] = None
    scale: float | str = "learned"
    min_scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.scale != "learned" and not (isinstance(self.scale, int | float) and self.scale > 0):
            raise ValueError(f"scale must be a positive number or 'learned', got {self.scale!r}")
        if not self.min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {self.min_scale}")

    @property
    def learned(self) -> bool:
        return self.scale == "learned"

    def init_params(self) -> dict[str, np.ndarray]:
        return {"likelihood.scale_raw": np.array(INV_SOFTPLUS_ONE)} if self.learned else {}

    def distribution(self, ops: Any, params: dict, out: Any, floor: float) -> Any:
        if self.learned:
            scale = positive(ops, params["likelihood.scale_raw"], self.min_scale)
        else:
            scale = ops.full(out, (), float(self.scale))
        return ops.dist.Normal(out, scale).to_event(1)


class _EightBit:
    r"""A likelihood of 8-bit pixels: each value x_d ∈ {0, …, 255} has an exact probability
    from ``outputs_per_value`` decoder outputs, so log p(x | z) is a log-probability of the
    data as stored and bits/dim need no dequantization (van den Oord et al. 2016; Salimans
    et al. 2017). The decoder's output ``(..., D · P)`` is read value-major, ``(..., D, P)``;
    the encoder reads x / 255 (``input_scale``).
    """

    levels: ClassVar[int] = 256
    data_kind: ClassVar[str] = "eight-bit"
    input_scale: ClassVar[float] = 1.0 / 255
    data_range: ClassVar[tuple[float, float] | None] = (0.0, 255.0)

    def init_params(self) -> dict[str, np.ndarray]:
        return {}

    def distribution(self, ops: Any, params: dict, out: Any, floor: float) -> Any:
        table = out.reshape(tuple(out.shape[:-1]) + (-1, self.outputs_per_value))
        return ops.functional_distribution(
            log_prob=lambda x: ops.sum(self.log_prob_values(ops, table, x), (-1,)),
            sample=lambda draw: self.sample_values(ops, table, draw),
            mean=lambda: self.mean_values(ops, table),
            batch_shape=tuple(table.shape[:-2]), event_shape=tuple(table.shape[-2:-1]),
            support=ops.dist.constraints.integer_interval(0, self.levels - 1))


@dataclass(frozen=True)
class DiscretizedLogistic(_EightBit):
    r"""Discretized mixture of logistics per value (PixelCNN++, Salimans et al. 2017, eq. 2).

    With c = 2x/255 − 1 ∈ [−1, 1], bin edges c ± 1/255 and component k's CDF
    σ((y − μ_k)/s_k):

    .. math:: P(x) = \sum_k π_k \left[σ\left(\tfrac{c + 1/255 − μ_k}{s_k}\right)
              − σ\left(\tfrac{c − 1/255 − μ_k}{s_k}\right)\right],

    the edge bins x = 0 and x = 255 taking the whole lower and upper tails. Each bin is
    evaluated in the log domain as log σ(a) + log σ(−b) + log(1 − e^{−(a−b)}), exact for
    σ(a) − σ(b) and stable in both tails (no mid-bin density fallback is needed). The
    decoder emits, per value, K mixture logits, K locations μ and K raw scales; s =
    softplus(raw) + ``min_scale`` (e^{−7} by default: log-scales floored at −7 as in PixelCNN++).
    Values (channels too) are independent given z: no coupling of RGB channels.

    Attributes
    ----------
    components : K, logistic mixture components per value.
    min_scale : the floor added to every softplus scale s.
    """

    name: ClassVar[str] = "discretized-logistic"
    components: int = 5
    min_scale: float = math.exp(-7.0)

    def __post_init__(self) -> None:
        check_count("components", self.components)
        if not self.min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {self.min_scale}")

    @property
    def outputs_per_value(self) -> int:
        return 3 * self.components

    def _components(self, ops: Any, table: Any) -> tuple[Any, Any, Any]:
        logits, loc, raw = ops.split(table, 3)
        return ops.log_softmax(logits), loc, positive(ops, raw, self.min_scale)

    def log_prob_values(self, ops: Any, table: Any, x: Any) -> Any:
        """log P(x_d) per value, ``(..., D)``."""
        log_weights, loc, scale = self._components(ops, table)
        half_bin = 1.0 / (self.levels - 1)
        x = x[..., None]
        centered = x * (2 * half_bin) - 1.0 - loc
        upper, lower = (centered + half_bin) / scale, (centered - half_bin) / scale
        top, bottom = x == self.levels - 1, x == 0
        log_cdf_upper = ops.where(top, 0.0, -ops.softplus(-upper))
        log_sf_lower = ops.where(bottom, 0.0, -ops.softplus(lower))
        log_gap = ops.where(top | bottom, 0.0, ops.log(-ops.expm1(-(2 * half_bin) / scale)))
        return ops.logsumexp(log_weights + log_cdf_upper + log_sf_lower + log_gap, -1)

    def sample_values(self, ops: Any, table: Any, draw: Any) -> Any:
        """Component k ~ π, y = μ_k + s_k logit(u), u ~ U(0, 1), binned and clipped."""
        log_weights, loc, scale = self._components(ops, table)
        k = draw(ops.dist.Categorical(logits=log_weights))
        loc_k, scale_k = ops.take_level(loc, k), ops.take_level(scale, k)
        u = draw(ops.dist.Uniform(ops.full(loc_k, tuple(loc_k.shape), 0.0),
                                  ops.full(loc_k, tuple(loc_k.shape), 1.0)))
        y = loc_k + scale_k * (ops.log(u) - ops.log1p(-u))
        return ops.clip(ops.round((y + 1.0) * ((self.levels - 1) / 2)), 0, self.levels - 1)

    def mean_values(self, ops: Any, table: Any) -> Any:
        """E[x_d] = Σ_{v=1}^{255} P(x_d ≥ v), the lower edge of bin v at 2v/255 − 1 − 1/255."""
        log_weights, loc, scale = self._components(ops, table)
        weights = ops.exp(log_weights)
        mean = 0.0
        for v in range(1, self.levels):
            edge = (2 * v - 1) / (self.levels - 1) - 1.0
            mean = mean + ops.sum(weights * ops.sigmoid((loc - edge) / scale), (-1,))
        return mean


@dataclass(frozen=True)
class Categorical256(_EightBit):
    r"""A 256-way softmax per value (PixelRNN, van den Oord et al. 2016):
    P(x_d = v) = softmax(f(z)_d)_v, 256 logits per value."""

    name: ClassVar[str] = "categorical"
    outputs_per_value: ClassVar[int] = 256

    def log_prob_values(self, ops: Any, table: Any, x: Any) -> Any:
        """log P(x_d) per value, ``(..., D)``."""
        return ops.take_level(ops.log_softmax(table), x)

    def sample_values(self, ops: Any, table: Any, draw: Any) -> Any:
        return ops.cast_like(draw(ops.dist.Categorical(logits=table)), table)

    def mean_values(self, ops: Any, table: Any) -> Any:
        probs = ops.exp(ops.log_softmax(table))
        return ops.sum(probs * ops.arange(table, self.levels), (-1,))
