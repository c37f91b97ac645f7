"""Gradient estimators of the ELBO, by name.

Each estimator is a small frozen dataclass (hashable, no array library), mapped to a
backend ELBO by ``ppl_vae.models.pyro_elbos.make_elbo`` and
``ppl_vae.models.numpyro_elbos.make_elbo``. Capabilities are class flags:
``reparameterized_only`` (differentiates through every sample path: refused for guides with
discrete or score-function sites), ``multi_particle`` (an importance-weighted bound whose K is
part of the objective), ``score_function`` (every latent site gets a score-function gradient;
the objective's value is the plain ELBO), ``stateful`` (keeps state from step to step: a
baseline) and ``closed_form_kl``. ``ESTIMATORS`` is the one table from the
names users write (CLI, specs) to types; ``VARIANTS`` names preset options of a type
(``score-nn-baseline`` is ``ScoreBaseline(neural=True)``).

References
----------
Williams (1992), Simple statistical gradient-following algorithms for connectionist
reinforcement learning. Kingma & Welling (2014), Auto-encoding variational Bayes.
Mnih & Gregor (2014), Neural variational inference and learning in belief networks.
Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders. Mnih & Rezende
(2016), Variational inference for Monte Carlo objectives.
Roeder, Wu & Duvenaud (2017), Sticking the landing: simple, lower-variance gradient
estimators for variational inference. Tucker, Lawson, Gu & Maddison (2018), Doubly
reparameterized gradient estimators for Monte Carlo objectives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["BASELINE_PREFIX", "ESTIMATORS", "IWAE", "STL", "VARIANTS", "VIMCO", "AnalyticKL",
           "DReG", "Reparam", "Score", "ScoreBaseline", "baseline_average_name",
           "estimator_names", "get_estimator", "is_baseline_average"]


class _Estimator:
    """Capability flags (all off) and the label reports use: the name, unless a preset."""

    name: ClassVar[str]
    reparameterized_only: ClassVar[bool] = False
    multi_particle: ClassVar[bool] = False
    score_function: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    closed_form_kl: ClassVar[bool] = False

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class Reparam(_Estimator):
    r"""Pathwise gradient of the Monte Carlo ELBO, ∇E_q[log p(x,z) − log q(z|x)] with
    z = g(ε, φ) (Kingma & Welling 2014). Non-reparameterizable sites (Bernoulli gates) get
    score-function terms, as Pyro's ``Trace_ELBO`` does."""

    name: ClassVar[str] = "reparam"


@dataclass(frozen=True)
class AnalyticKL(_Estimator):
    r"""E_q[log p(x|z)] − KL(q ‖ p) with the KL in closed form (Kingma & Welling 2014, eq. 10);
    ``TraceMeanField_ELBO``. Refused for a spec whose pair has no closed form."""

    name: ClassVar[str] = "analytic-kl"
    closed_form_kl: ClassVar[bool] = True


@dataclass(frozen=True)
class Score(_Estimator):
    r"""Score-function (REINFORCE) gradient on every latent site:
    E_q[(log p(x,z) − log q(z|x)) ∇ log q(z|x)] (Williams 1992; Ranganath et al. 2014),
    no baseline."""

    name: ClassVar[str] = "score"
    score_function: ClassVar[bool] = True


@dataclass(frozen=True)
class ScoreBaseline(_Estimator):
    r"""Score-function gradient with a baseline b subtracted from the learning signal f:
    E_q[(f − b) ∇ log q] (Mnih & Gregor 2014), unbiased because E_q[∇ log q] = 0.

    ``b`` is a decaying average b_n ← β b_n + (1 − β) f_n per datapoint n, keyed by the
    index of the data plate's subsample (so each datapoint keeps its own average however the
    minibatches are shuffled); with ``neural=True`` a one-hidden-layer network of the
    data, fitted to the residual f − b by least squares, is added to it (NVIL's
    input-dependent baseline; ``hidden`` units).
    """

    name: ClassVar[str] = "score-baseline"
    score_function: ClassVar[bool] = True
    stateful: ClassVar[bool] = True
    beta: float = 0.9
    neural: bool = False
    hidden: int = 64

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"baseline beta must lie in [0, 1), got {self.beta}")
        if not (isinstance(self.hidden, int) and self.hidden >= 1):
            raise ValueError(f"hidden must be an integer >= 1, got {self.hidden!r}")

    @property
    def label(self) -> str:
        return "score-nn-baseline" if self.neural else self.name


@dataclass(frozen=True)
class IWAE(_Estimator):
    r"""Importance-weighted bound log (1/K) Σ_k p(x, z_k) / q(z_k | x), K = num_particles
    (Burda et al. 2016), with its pathwise gradient; the minibatch scale N/B multiplies the
    log-mean-exp. Refused for guides with discrete or score-function sites (use
    :class:`VIMCO`)."""

    name: ClassVar[str] = "iwae"
    reparameterized_only: ClassVar[bool] = True
    multi_particle: ClassVar[bool] = True


@dataclass(frozen=True)
class VIMCO(_Estimator):
    r"""The importance-weighted bound with VIMCO's gradient (Mnih & Rezende 2016): pathwise
    through reparameterized sites, and for discrete ones (Bernoulli gates) the score term
    Σ_k L̂(k | −k) ∇ log q(z_k) with a leave-one-out baseline per particle. Needs K ≥ 2."""

    name: ClassVar[str] = "vimco"
    multi_particle: ClassVar[bool] = True


@dataclass(frozen=True)
class STL(_Estimator):
    r"""Sticking the landing (Roeder et al. 2017): the pathwise ELBO gradient with the
    score term ∇_φ log q_φ(z) dropped, i.e. log q evaluated with stop-gradient on φ but
    differentiated through z = g(ε, φ). Unbiased (E_q[∇_φ log q_φ] = 0) and of zero
    variance when q equals the exact posterior. Needs every latent site reparameterized."""

    name: ClassVar[str] = "stl"
    reparameterized_only: ClassVar[bool] = True


@dataclass(frozen=True)
class DReG(_Estimator):
    r"""Doubly reparameterized IWAE gradient (Tucker et al. 2018), K = num_particles.

    Model parameters θ get the IWAE gradient Σ_k w̃_k ∇_θ log w_k; guide parameters φ get
    Σ_k w̃_k² (∂ log w_k / ∂z_k)(∂z_k / ∂φ), with w̃ the normalized weights and log q
    evaluated with stop-gradient on φ. Unbiased for the IWAE bound's gradient; equal to
    :class:`STL` at K = 1. Needs every latent site reparameterized."""

    name: ClassVar[str] = "dreg"
    reparameterized_only: ClassVar[bool] = True
    multi_particle: ClassVar[bool] = True


BASELINE_PREFIX = "baseline."
"""Names of baseline state and parameters (``baseline.<site>...``) added by ``score-baseline``
guides; they belong to the estimator, not to the model."""


def baseline_average_name(site: str) -> str:
    """Where ``score-baseline`` keeps a site's decaying averages, one per datapoint."""
    return f"{BASELINE_PREFIX}{site}.average"


def is_baseline_average(name: str) -> bool:
    """Whether a parameter name is a baseline's running averages (state, not optimized)."""
    return name.startswith(BASELINE_PREFIX) and name.endswith(".average")

ESTIMATORS: dict[str, type] = {c.name: c for c in (Reparam, AnalyticKL, Score, ScoreBaseline,
                                                    IWAE, VIMCO, STL, DReG)}
VARIANTS: dict[str, Any] = {"score-nn-baseline": ScoreBaseline(neural=True)}
"""Named presets of an estimator type's options."""


def estimator_names() -> list[str]:
    """Every name :func:`get_estimator` accepts."""
    return [*ESTIMATORS, *VARIANTS]


def get_estimator(estimator: str | Any) -> Any:
    """An estimator instance from its name (or the instance itself)."""
    if isinstance(estimator, tuple(ESTIMATORS.values())):
        return estimator
    if estimator in VARIANTS:
        return VARIANTS[estimator]
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of "
                         f"{', '.join(estimator_names())}")
    return ESTIMATORS[estimator]()
