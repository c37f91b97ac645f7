r"""Prior families p(z) with closed-form parameters: fixed and learned location-scale
priors, the mixture of Gaussians, and the per-class tables of a conditional VAE's learned
prior (``[condition] prior = "learned"``): each parameter of the prior becomes a ``(C, d)``
table, and p(z | c) uses the rows one_hot(c) · table (Sohn et al. 2015).

The priors that read networks (VampPrior, flow) are in :mod:`ppl_vae.families.learned_priors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ppl_vae.families.base import INV_SOFTPLUS_ONE, check_count, positive


class _Factorized:
    """A prior that is a product over latent dimensions and reads no encoder."""

    factorized: ClassVar[bool] = True
    uses_encoder: ClassVar[bool] = False

    @staticmethod
    def log_prob_size(latent_dim: int) -> int:
        """Numbers one log p(z) evaluation holds per draw."""
        return latent_dim


class _StandardLocScale(_Factorized):
    """A fixed factorized prior with location 0 and scale 1 in every dimension."""

    distribution_name: ClassVar[str]

    def init_params(self, latent_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def distribution(self, ops: Any, params: dict, like: Any, latent_dim: int, floor: float):
        cls = getattr(ops.dist, self.distribution_name)
        return cls(ops.full(like, (latent_dim,), 0.0),
                   ops.full(like, (latent_dim,), 1.0)).to_event(1)


@dataclass(frozen=True)
class StandardNormal(_StandardLocScale):
    """p(z) = N(0, I)."""

    name: ClassVar[str] = "standard-normal"
    distribution_name: ClassVar[str] = "Normal"


@dataclass(frozen=True)
class StandardLaplace(_StandardLocScale):
    """p(z) = ∏ Laplace(z_i; 0, 1)."""

    name: ClassVar[str] = "standard-laplace"
    distribution_name: ClassVar[str] = "Laplace"


class _LearnedLocScale(_Factorized):
    """A learned factorized prior: location μ and scale softplus(ρ) + floor per dimension,
    starting at location 0 and scale 1."""

    distribution_name: ClassVar[str]

    def init_params(self, latent_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"prior.loc": np.zeros(latent_dim),
                "prior.scale_raw": np.full(latent_dim, INV_SOFTPLUS_ONE)}

    def distribution(self, ops: Any, params: dict, like: Any, latent_dim: int, floor: float):
        scale = positive(ops, params["prior.scale_raw"], floor)
        return getattr(ops.dist, self.distribution_name)(params["prior.loc"], scale).to_event(1)


@dataclass(frozen=True)
class LearnedNormal(_LearnedLocScale):
    """p(z) = N(μ, diag σ²) with learned μ and σ = softplus(ρ) + floor (starts at N(0, I))."""

    name: ClassVar[str] = "learned-normal"
    distribution_name: ClassVar[str] = "Normal"


@dataclass(frozen=True)
class LearnedLaplace(_LearnedLocScale):
    """p(z) = ∏ Laplace(z_i; μ_i, b_i) with learned μ and b = softplus(ρ) + floor."""

    name: ClassVar[str] = "learned-laplace"
    distribution_name: ClassVar[str] = "Laplace"


@dataclass(frozen=True)
class MixtureOfGaussians:
    r"""p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), all learned; means start at N(0, I) draws.

    Attributes
    ----------
    components : K, the number of Gaussian components.
    """

    name: ClassVar[str] = "mixture"
    factorized: ClassVar[bool] = False
    uses_encoder: ClassVar[bool] = False
    components: int = 10

    def __post_init__(self) -> None:
        check_count("components", self.components)

    def log_prob_size(self, latent_dim: int) -> int:
        """Numbers one log p(z) evaluation holds per draw (the (K, d) component terms)."""
        return self.components * latent_dim

    def init_params(self, latent_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k = self.components
        return {"prior.logits": np.zeros(k),
                "prior.locs": rng.normal(size=(k, latent_dim)),
                "prior.scales_raw": np.full((k, latent_dim), INV_SOFTPLUS_ONE)}

    def distribution(self, ops: Any, params: dict, like: Any, latent_dim: int, floor: float):
        scales = positive(ops, params["prior.scales_raw"], floor)
        components = ops.dist.Normal(params["prior.locs"], scales).to_event(1)
        return ops.dist.MixtureSameFamily(ops.dist.Categorical(logits=params["prior.logits"]),
                                          components)




def class_prior_params(spec: Any, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The prior's initial parameters, one row per class under ``[condition] prior =
    "learned"`` (every class starts at the unconditioned prior's values)."""
    cond = spec.condition
    if cond is None or not cond.learned_prior:
        return params
    return {name: np.tile(value, (cond.classes, 1)) for name, value in params.items()}


def class_rows(params: dict[str, Any], one_hot: Any) -> dict[str, Any]:
    """Each ``(C, d)`` table's row of each datapoint's class: ``one_hot (B, C) @ table``."""
    return {name: one_hot @ table for name, table in params.items()}
