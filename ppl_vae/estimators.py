"""Gradient estimators of the ELBO, by name.

Each estimator is a small frozen dataclass (hashable, no array library), mapped to a
backend ELBO by ``ppl_vae.models.pyro_elbos.make_elbo`` and
``ppl_vae.models.numpyro_elbos.make_elbo``. ``ESTIMATORS`` is the one table from the
names users write (CLI, specs) to types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Reparam:
    r"""Pathwise gradient of the Monte Carlo ELBO, ∇E_q[log p(x,z) − log q(z|x)] with
    z = g(ε, φ) (Kingma & Welling 2014). Non-reparameterizable sites (Bernoulli gates) get
    score-function terms, as Pyro's ``Trace_ELBO`` does."""

    name: ClassVar[str] = "reparam"


@dataclass(frozen=True)
class AnalyticKL:
    r"""E_q[log p(x|z)] − KL(q ‖ p) with the KL in closed form (Kingma & Welling 2014, eq. 10);
    ``TraceMeanField_ELBO``. Refused for a spec whose pair has no closed form."""

    name: ClassVar[str] = "analytic-kl"


@dataclass(frozen=True)
class Score:
    r"""Score-function (REINFORCE) gradient on every latent site:
    E_q[(log p(x,z) − log q(z|x)) ∇ log q(z|x)] (Williams 1992; Ranganath et al. 2014),
    no baseline."""

    name: ClassVar[str] = "score"


@dataclass(frozen=True)
class ScoreBaseline:
    r"""Score-function gradient with a decaying-average baseline b ← β b + (1 − β) f
    subtracted from the learning signal (Mnih & Gregor 2014); ``TraceGraph_ELBO``."""

    name: ClassVar[str] = "score-baseline"
    beta: float = 0.9


@dataclass(frozen=True)
class IWAE:
    r"""Importance-weighted bound log (1/K) Σ_k p(x, z_k) / q(z_k | x), K = num_particles
    (Burda et al. 2016); ``RenyiELBO(alpha=0)``."""

    name: ClassVar[str] = "iwae"


ESTIMATORS: dict[str, type] = {c.name: c for c in (Reparam, AnalyticKL, Score, ScoreBaseline,
                                                    IWAE)}


def get_estimator(estimator: str | Any) -> Any:
    """An estimator instance from its name (or the instance itself)."""
    if isinstance(estimator, tuple(ESTIMATORS.values())):
        return estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of "
                         f"{', '.join(ESTIMATORS)}")
    return ESTIMATORS[estimator]()
