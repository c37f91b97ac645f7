r"""Bidirectional Monte Carlo (BDMC): how loose are the log p(x) estimates of a trained VAE?

On data simulated from the model itself, (z_n, x_n) ~ p(z) p(x | z) (given labels c_n for a
conditional VAE: z_n ~ p(z | c_n), x_n ~ p(x | z_n, c_n)), z_n is an exact draw from the
posterior p(z | x_n). Along the geometric path f_β(z) = p(z) p(x | z)^β, 0 = β_0 < … < β_T = 1,

* forward AIS (prior → posterior, chains started at z ~ p(z)) has E[w] = p(x), so
  log-mean-exp of its weights is a stochastic *lower* bound of log p(x);
* reverse AIS (posterior → prior, the same transitions in reverse order, started at the
  exact z_n) has E[w'] = 1 / p(x), so −log-mean-exp of its weights is a stochastic *upper*
  bound (Grosse et al. 2015).

The true log p(x_n) lies between them (in expectation); the gap (upper − lower) bounds the
error of both and shrinks to 0 as T grows. Importance sampling with the encoder (K draws of
q(z | x)) on the same simulated data is then measured against the truth: upper − IS is an
upper bound of how far IS falls below log p(x) for data like the model's own samples, an
estimate of how loose the test-set IS figure is (Wu et al. 2017, who found the gap on
simulated data a good guide to the gap on real data).

Both directions run :class:`~ppl_vae.evaluation.ais.AISChains` (NumPyro HMC on a NumPyro copy
of a Pyro model), with the step sizes of one forward pilot run: the reverse run takes the
pilot's step size of each temperature, so its kernels are the forward kernels in reverse order.

References
----------
Grosse, R. B., Ghahramani, Z. & Adams, R. P. (2015). Sandwiching the marginal likelihood using
bidirectional Monte Carlo. arXiv:1511.02543.
Wu, Y., Burda, Y., Salakhutdinov, R. & Grosse, R. (2017). On the quantitative analysis of
decoder-based generative models. ICLR.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.evaluation.ais import AISChains, check_settings, sigmoid_schedule
from ppl_vae.evaluation.importance import (
    DEFAULT_BUDGET,
    check_x,
    importance_sample,
    log_mean_exp,
)
from ppl_vae.models import as_numpyro
from ppl_vae.models._core import prior_sample_shape, sample_labels

BDMC_COLUMNS = ["quantity", "estimator", "size", "mean", "stderr", "seconds", "acceptance"]
"""Columns of :attr:`BDMCResult.table`: ``quantity`` lower / upper / gap / is /
upper_minus_is, ``estimator`` (forward AIS, reverse AIS, IS), ``size`` (T temperatures or K
particles), ``mean`` and ``stderr`` over the simulated datapoints (nats), wall ``seconds``
(compilation included), mean HMC ``acceptance``."""

__all__ = ["BDMC_COLUMNS", "BDMCResult", "SimulatedData", "bdmc", "check_bdmc",
           "looseness_note", "reverse_steps", "simulate"]


@dataclass(frozen=True)
class SimulatedData:
    """Datapoints drawn from a model: ``x`` ``(N, D)``, their latents ``z`` ``(N, d)`` (exact
    posterior draws given x) and the labels ``c`` ``(N,)`` they were drawn with (None for an
    unconditioned model)."""

    x: np.ndarray
    z: np.ndarray
    c: np.ndarray | None


def check_bdmc(vae: Any) -> None:
    """Raise unless BDMC can run on ``vae``: one real-valued latent site ``z`` and a prior with
    a closed-form variance (the HMC mass matrix of chains that start at the prior)."""
    check_settings(vae, "prior", 1, 0.5, 1.0)
    jvae = as_numpyro(vae)
    labels = sample_labels(vae.spec, 1)
    prior = jvae.prior(jvae.as_tensor(np.zeros(())), jvae.as_index(labels))["z"]
    try:
        _ = prior.variance
    except NotImplementedError:
        raise ValueError(f"BDMC anneals from the prior and uses its variance as the HMC mass "
                         f"matrix, and prior family {vae.spec.prior.name!r} has none in closed "
                         "form; BDMC is not available for this model") from None


def simulate(vae: Any, num_points: int, *, c: Any = None, seed: int = 0) -> SimulatedData:
    """Draw z ~ p(z) (p(z | c)) and x ~ p(x | z) (p(x | z, c)) ``num_points`` times.

    ``c``: one label, or one per point, for a conditioned model; by default the classes in
    turn. The draws come from the model's NumPyro copy (both backends define the same
    distributions).
    """
    import jax

    if not (isinstance(num_points, int) and num_points >= 1):
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    jvae = as_numpyro(vae)
    labels = sample_labels(vae.spec, num_points, c)
    cj = jvae.as_index(labels)
    key_z, key_x = jax.random.split(jax.random.PRNGKey(seed))
    prior = jvae.prior(jvae.as_tensor(np.zeros(())), cj)
    (site, d), = prior.items()
    z = jvae.ops.draw(d, key_z, prior_sample_shape(d, num_points))
    x = jvae.likelihood(jvae.code({site: z}), cj).sample(key_x)
    x = check_x(vae.spec, np.asarray(x, dtype=jvae.dtype))
    return SimulatedData(x=x, z=np.asarray(z, dtype=np.float64), c=labels)


@dataclass(frozen=True)
class BDMCResult:
    """BDMC bounds and importance sampling on simulated data.

    Attributes
    ----------
    table : tidy summary, columns :data:`BDMC_COLUMNS`.
    data : the :class:`SimulatedData`.
    lower, upper : T -> ``(N,)`` forward (lower) and reverse (upper) AIS estimates of
        log p(x_n), nats, float64.
    importance : K -> ``(N,)`` importance-sampled log p(x_n) with the encoder.
    num_chains : AIS chains per datapoint and direction.
    """

    table: pd.DataFrame
    data: SimulatedData
    lower: dict[int, np.ndarray]
    upper: dict[int, np.ndarray]
    importance: dict[int, np.ndarray]
    num_chains: int

    @property
    def largest_temperatures(self) -> int:
        return max(self.upper)

    def looseness(self) -> tuple[float, float]:
        """Mean and standard error over datapoints of upper(largest T) − IS(largest K): how
        far (at most, in expectation) the IS estimate falls below log p(x); NaN without IS."""
        if not self.importance:
            return math.nan, math.nan
        top = self.upper[self.largest_temperatures]
        return _mean_se(top - self.importance[max(self.importance)])


def bdmc(vae: Any, num_points: int = 20, *, temperatures: Sequence[int] = (100, 1000),
         num_chains: int = 1, is_samples: Sequence[int] = (100, 1000, 5000),
         num_leapfrog: int = 10, step_size: float = 0.2, target_accept: float = 0.65,
         pilot_chains: int = 4, c: Any = None, budget: int = DEFAULT_BUDGET,
         seed: int = 0) -> BDMCResult:
    """Sandwich log p(x) on ``num_points`` datapoints simulated from ``vae``.

    Parameters
    ----------
    vae : a VAE of either backend with one real-valued latent site ``z`` whose prior has a
        variance (the HMC mass matrix); conditional VAEs simulate given labels ``c``.
    num_points : N, the simulated datapoints.
    temperatures : the T of each pair of AIS runs (sigmoidal schedules).
    num_chains : chains per datapoint and direction (the reverse ones all start at the
        datapoint's exact latent; Grosse et al. 2015 use one).
    is_samples : the K of importance sampling with the encoder on the same data (empty: none;
        models without an encoder get none).
    num_leapfrog, step_size, target_accept, pilot_chains : HMC settings, as in
        :func:`~ppl_vae.evaluation.ais.ais_log_likelihood`.
    c : labels for the simulation (see :func:`simulate`).
    budget : (particle × datapoint) pairs decoded at once by importance sampling.
    seed : seeds the simulation, the chains and the importance draws.
    """
    import jax

    check_bdmc(vae)
    settings = check_settings(vae, "prior", num_leapfrog, target_accept, step_size,
                              num_chains=num_chains, pilot_chains=pilot_chains)
    temperatures = _sizes(temperatures, "temperatures")
    is_samples = _sizes(is_samples, "is_samples", allow_empty=True)
    if not vae.spec.posterior.amortized:
        is_samples = ()
    data = simulate(vae, num_points, c=c, seed=seed)
    chains = AISChains(vae, data.x, c=data.c, settings=settings)
    rows: list[dict[str, Any]] = []
    lower: dict[int, np.ndarray] = {}
    upper: dict[int, np.ndarray] = {}
    z_start = np.broadcast_to(data.z, (num_chains, *data.z.shape))
    for number, steps_t in enumerate(temperatures):
        key_pilot, key_fwd, key_rev = jax.random.split(jax.random.PRNGKey(seed + 1 + number), 3)
        betas = sigmoid_schedule(steps_t)
        began = time.perf_counter()
        steps = chains.pilot_step_sizes(betas, step_size, pilot_chains, key_pilot)
        log_w, accept, _ = chains.run(betas, steps, num_chains, key_fwd)
        lower[steps_t] = log_mean_exp(log_w)[0]
        rows.append(_row("lower", "forward AIS", steps_t, lower[steps_t], began, accept))
        began = time.perf_counter()
        log_w, accept, _ = chains.run(betas[::-1], reverse_steps(steps), num_chains, key_rev,
                                      z_start=z_start)
        upper[steps_t] = -log_mean_exp(log_w)[0]
        rows.append(_row("upper", "reverse AIS", steps_t, upper[steps_t], began, accept))
        rows.append(_row("gap", "reverse − forward AIS", steps_t,
                         upper[steps_t] - lower[steps_t]))
    importance: dict[int, np.ndarray] = {}
    top = upper[max(upper)]
    for k in is_samples:
        began = time.perf_counter()
        importance[k] = importance_sample(vae, data.x, k, seed=seed, budget=budget,
                                          c=data.c).log_likelihood
        rows.append(_row("is", "IS (encoder)", k, importance[k], began))
        rows.append(_row("upper_minus_is", f"reverse AIS (T = {max(upper)}) − IS", k,
                         top - importance[k]))
    return BDMCResult(table=pd.DataFrame(rows, columns=BDMC_COLUMNS), data=data, lower=lower,
                      upper=upper, importance=importance, num_chains=num_chains)


def reverse_steps(steps: Any) -> Any:
    """Step sizes of the reverse run from the forward run's ``(N, T)``: the reverse run's
    transitions are at β_{T−1}, …, β_0, the forward run's at β_1, …, β_T, so each reverse
    transition takes the forward step of its temperature (β_0, never a forward target, takes
    β_1's)."""
    import jax.numpy as jnp

    return jnp.concatenate([steps[:, ::-1][:, 1:], steps[:, :1]], axis=1)


def looseness_note(table: pd.DataFrame) -> str:
    """One line from a :attr:`BDMCResult.table`: how wide the BDMC band is at the largest T
    and how far below its upper end IS (at the largest K) lies, on simulated data."""
    gap = table[table["quantity"] == "gap"].sort_values("size").iloc[-1]
    band = (f"BDMC on simulated data, T = {int(gap['size'])}: log p(x) lies in a band "
            f"{gap['mean']:.3g} ± {gap['stderr']:.2g} nats wide")
    loose = table[table["quantity"] == "upper_minus_is"].sort_values("size")
    if loose.empty:
        return band + " (no IS: the model has no encoder)."
    last = loose.iloc[-1]
    return (f"{band}; IS with K = {int(last['size'])} lies {last['mean']:.3g} ± "
            f"{last['stderr']:.2g} nats below its upper end, so the test-set IS figure is "
            f"likely loose by up to about {max(last['mean'], 0.0):.2g} nats (to the extent "
            "that the test data resemble the model's samples; Wu et al. 2017).")


def _sizes(values: Sequence[int], name: str, allow_empty: bool = False) -> tuple[int, ...]:
    values = tuple(values)
    if not values and not allow_empty:
        raise ValueError(f"{name} must name at least one size")
    for value in values:
        if not (isinstance(value, int | np.integer) and value >= 1):
            raise ValueError(f"{name} must be positive integers, got {value!r}")
    return tuple(sorted(set(int(v) for v in values)))


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = values.size
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(values.mean()), se


def _row(quantity: str, estimator: str, size: int, values: np.ndarray,
         began: float | None = None, acceptance: np.ndarray | None = None) -> dict[str, Any]:
    mean, se = _mean_se(values)
    return {"quantity": quantity, "estimator": estimator, "size": size, "mean": mean,
            "stderr": se,
            "seconds": math.nan if began is None else time.perf_counter() - began,
            "acceptance": math.nan if acceptance is None else float(np.mean(acceptance))}
