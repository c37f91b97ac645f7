r"""Model metrics beyond log p(x): KL per latent dimension, active units, code sparsity,
reconstruction error, nearest training neighbours of samples, Parzen windows.

* KL per dimension: KL(q(z_u | x) ‖ p(z_u)) averaged over data, for factorised q and p
  (closed form when the spec says ``kl = "analytic"``, else Monte Carlo), summed over the
  sites of a dimension (``gate`` and ``slab`` for masked codes).
* Active units (Burda et al. 2016): A_u = Cov_x(E_{q(z|x)}[z_u]); unit u is active when
  A_u > 0.01.
* Code sparsity (masked codes): the fraction of gates on, E_x mean_u q(m_u = 1 | x) (for a
  relaxed gate, P(m_u > 1/2) — also sigmoid(logit)).
* Nearest training neighbours of model samples (scikit-learn): samples much closer to the
  training set than test images are suggest memorisation (Theis et al. 2016).
* Parzen windows: a Gaussian kernel density fitted to model samples, bandwidth chosen on
  validation data (Breuleux et al. 2011). Unreliable in high dimension (Theis et al. 2016):
  it warns every time.

References
----------
Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
Theis, L., van den Oord, A. & Bethge, M. (2016). A note on the evaluation of generative
models. ICLR.
Breuleux, O., Bengio, Y. & Vincent, P. (2011). Quickly generating representative samples
from an RBM-derived process. Neural Computation 23(8).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppl_vae.evaluation.importance import check_inputs
from ppl_vae.models import float64, to_numpy

ACTIVE_UNIT_THRESHOLD = 0.01
"""Burda et al. (2016)'s threshold on Cov_x(E_q[z_u])."""

__all__ = ["ACTIVE_UNIT_THRESHOLD", "ActiveUnits", "KLPerDimension", "ParzenEstimate",
           "active_units", "code_sparsity", "kl_per_dimension", "model_samples",
           "nearest_training_neighbours", "parzen_log_likelihood", "reconstruction_error"]


@dataclass(frozen=True)
class KLPerDimension:
    """KL(q(z_u | x) ‖ p(z_u)) per latent dimension, averaged over the data (float64, (d,)).

    ``stderr`` is the standard error of the mean over datapoints plus, for Monte Carlo,
    the draws; ``method`` is ``"analytic"`` or ``"monte-carlo"``.
    """

    kl: np.ndarray
    stderr: np.ndarray
    method: str


def kl_per_dimension(vae: Any, x: Any, *, idx: Any = None, num_samples: int = 100,
                     seed: int = 0, batch_size: int = 500, c: Any = None) -> KLPerDimension:
    """Average KL(q(z_u | x) ‖ p(z_u)) for each latent dimension u.

    Needs a factorised prior (not a mixture) and a posterior with a density (not point
    codes). With ``spec.kl == "analytic"`` the closed form is used, otherwise the Monte
    Carlo mean of log q(z_u | x) − log p(z_u) over ``num_samples`` draws per datapoint.
    A conditioned model takes the labels ``c`` (as every function here): KL(q(z_u | x, c) ‖
    p(z_u | c)).
    """
    spec = vae.spec
    if not spec.prior.factorized:
        raise ValueError(f"prior family {spec.prior.name!r} (a mixture or a flow) does not "
                         "factorise over latent dimensions, so KL per dimension is undefined; "
                         "use the total rate (importance_sample(...).rate)")
    x, c = check_inputs(spec, x, idx, c)
    analytic = spec.kl == "analytic"
    per_point = []
    with vae.inference(seed):
        for i, sl in enumerate(_batches(x.shape[0], batch_size)):
            per_point.append(float64(vae.compute(_kl_dims, (analytic, num_samples),
                                                 vae.as_tensor(x[sl]), _rows(vae, idx, sl),
                                                 _rows(vae, c, sl), vae.rng_key(seed + i))))
    per_point = np.concatenate(per_point)
    n = per_point.shape[0]
    stderr = per_point.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(
        per_point.shape[1], np.nan)
    return KLPerDimension(per_point.mean(axis=0), stderr,
                          "analytic" if analytic else "monte-carlo")


@dataclass(frozen=True)
class ActiveUnits:
    """``activity[u]`` = Var_x(E_q[z_u | x]); ``active`` = activity > threshold."""

    activity: np.ndarray
    threshold: float

    @property
    def active(self) -> np.ndarray:
        return self.activity > self.threshold

    @property
    def count(self) -> int:
        return int(self.active.sum())


def active_units(vae: Any, x: Any, *, idx: Any = None, threshold: float = ACTIVE_UNIT_THRESHOLD,
                 batch_size: int = 1000, c: Any = None) -> ActiveUnits:
    """Active units of Burda et al. (2016): dimensions whose posterior mean varies with x.

    For masked codes E_q[z_u] = q(m_u = 1 | x) · E_q[s_u | x].
    """
    x, c = check_inputs(vae.spec, x, idx, c)
    if x.shape[0] < 2:
        raise ValueError("active units need at least 2 datapoints (a variance over x)")
    means = np.concatenate([
        float64(vae.compute(_posterior_mean, (), vae.as_tensor(x[sl]), _rows(vae, idx, sl),
                            _rows(vae, c, sl)))
        for sl in _batches(x.shape[0], batch_size)])
    return ActiveUnits(means.var(axis=0), float(threshold))


def code_sparsity(vae: Any, x: Any, *, batch_size: int = 1000, c: Any = None) -> np.ndarray:
    """Masked codes: q(m_u = 1 | x) averaged over x, per dimension (float64, (d,)).

    The fraction of gates on is its mean over dimensions.
    """
    if not vae.spec.posterior.gated:
        raise ValueError(f"code sparsity applies to masked codes; posterior "
                         f"{vae.spec.posterior.name!r} has no gates")
    x, c = check_inputs(vae.spec, x, None, c)
    total = np.zeros(vae.spec.latent_dim)
    for sl in _batches(x.shape[0], batch_size):
        logits = float64(vae.compute(_gate_logits, (), vae.as_tensor(x[sl]), _rows(vae, c, sl)))
        total += (1.0 / (1.0 + np.exp(-logits))).sum(axis=0)
    return total / x.shape[0]


def reconstruction_error(vae: Any, x: Any, *, idx: Any = None,
                         batch_size: int = 1000, c: Any = None) -> np.ndarray:
    """Mean squared error per dimension of decode(encode(x)) against x, per datapoint."""
    x, c = check_inputs(vae.spec, x, idx, c)
    out = []
    for sl in _batches(x.shape[0], batch_size):
        rec = float64(vae.compute(_reconstruct, (), vae.as_tensor(x[sl]), _rows(vae, idx, sl),
                                  _rows(vae, c, sl)))
        out.append(np.mean((rec - x[sl]) ** 2, axis=1))
    return np.concatenate(out)


def nearest_training_neighbours(samples: Any, train: Any,
                                k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances ``(n, k)`` and training-set indices ``(n, k)`` of the ``k``
    nearest training points of each sample (scikit-learn, exact search)."""
    from sklearn.neighbors import NearestNeighbors

    samples, train = (float64(a).reshape(len(a), -1) for a in (samples, train))
    if samples.shape[1] != train.shape[1]:
        raise ValueError(f"samples have {samples.shape[1]} values each, the training data "
                         f"{train.shape[1]}")
    index = NearestNeighbors(n_neighbors=k).fit(train)
    distances, indices = index.kneighbors(samples)
    return distances, indices


@dataclass(frozen=True)
class ParzenEstimate:
    """Parzen-window log-density per datapoint (nats) and the bandwidth used."""

    log_likelihood: np.ndarray
    bandwidth: float


PARZEN_WARNING = ("Parzen-window log-likelihoods are unreliable in high dimension: even "
                  "with millions of samples they can be far from the true log p(x) and rank "
                  "models wrongly (Theis et al. 2016); report them only to compare with older "
                  "papers, and prefer the importance-sampled or AIS estimates")


def parzen_log_likelihood(samples: Any, x: Any, *, valid: Any = None,
                          bandwidths: Any = None) -> ParzenEstimate:
    r"""Gaussian kernel density of model ``samples`` evaluated at ``x``.

    log p̂(x) = logsumexp_i(−‖x − s_i‖² / 2σ²) − log n − (D/2) log(2πσ²). The bandwidth σ
    maximises the mean log-density of ``valid`` over ``bandwidths`` (default
    logspace(−2, 0, 9)); with one bandwidth and no ``valid`` it is used as given. Always
    warns that the estimate is unreliable in high dimension.
    """
    from sklearn.neighbors import KernelDensity

    warnings.warn(PARZEN_WARNING, UserWarning, stacklevel=2)
    samples, x = float64(samples), float64(x)
    samples, x = samples.reshape(len(samples), -1), x.reshape(len(x), -1)
    grid = np.logspace(-2, 0, 9) if bandwidths is None else np.atleast_1d(
        np.asarray(bandwidths, dtype=np.float64))
    if np.any(grid <= 0):
        raise ValueError("bandwidths must be positive")
    if grid.size > 1:
        if valid is None:
            raise ValueError("choosing among several bandwidths needs validation data: pass "
                             "valid= (held-out points not in x) or a single bandwidth")
        valid = float64(valid).reshape(len(valid), -1)
        scores = [KernelDensity(bandwidth=float(h)).fit(samples).score_samples(valid).mean()
                  for h in grid]
        best = float(grid[int(np.argmax(scores))])
    else:
        best = float(grid[0])
    return ParzenEstimate(KernelDensity(bandwidth=best).fit(samples).score_samples(x), best)


def model_samples(vae: Any, num_samples: int, seed: int = 0) -> np.ndarray:
    """Decoder means E[x | z] of ``num_samples`` draws z ~ p(z), float64 ``(n, D)`` (for a
    conditioned model the classes in turn, z ~ p(z | c); see ``vae.sample``).

    Pyro draws from a forked, seeded torch generator, so global RNG states are untouched.
    """
    with vae.inference(seed):
        return float64(vae.compute(_sample, (num_samples,), vae.rng_key(seed)))


def has_encoder_codes(spec: Any, idx: Any) -> bool:
    """Whether q(z | x) with a density is available for the data: an encoder, or stored
    Gaussian codes with their training indices (point codes have no density)."""
    if spec.posterior.amortized:
        return True
    return idx is not None and spec.posterior.has_density


def _batches(num: int, size: int) -> Any:
    for start in range(0, num, size):
        yield slice(start, min(start + size, num))


def _rows(vae: Any, idx: Any, sl: slice) -> Any:
    """Rows ``sl`` of datapoint indices or class labels as the backend's array (None stays)."""
    return None if idx is None else vae.as_index(to_numpy(idx)[sl])


# Functions run through ``vae.compute`` (compiled on NumPyro); module level, so each is one
# static key of the compile cache.


def _kl_dims(vae: Any, analytic: bool, num_samples: int, x: Any, idx: Any, c: Any,
             key: Any) -> Any:
    q, p = vae.posterior(x, idx, c=c), vae.prior(x, c)
    if analytic:
        return sum(vae.ops.kl_divergence(q[s].base_dist, p[s].base_dist) for s in vae.sites)
    lat = vae.sample_latents(x, num_samples, idx, seed=key, c=c)
    return sum(q[s].base_dist.log_prob(lat[s]) - p[s].base_dist.log_prob(lat[s])
               for s in vae.sites).mean(0)


def _posterior_mean(vae: Any, x: Any, idx: Any, c: Any) -> Any:
    return vae.posterior_mean(x, idx, c)


def _gate_logits(vae: Any, x: Any, c: Any) -> Any:
    return vae.posterior(x, c=c)["gate"].base_dist.logits


def _reconstruct(vae: Any, x: Any, idx: Any, c: Any) -> Any:
    return vae.reconstruct(x, idx, c)


def _sample(vae: Any, num_samples: int, key: Any) -> Any:
    return vae.sample(num_samples) if key is None else vae.sample(num_samples, seed=key)
