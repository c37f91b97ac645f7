r"""Per-datapoint ELBO and importance-sampled log p(x), chunked, on both backends.

With K draws z_k ~ q(z | x) and log weights log w_k = log p(x, z_k) − log q(z_k | x),

.. math::
    \log \hat p(x) = \log \frac{1}{K} \sum_{k=1}^K w_k, \qquad
    \mathrm{ELBO}(x) = \frac{1}{K} \sum_k \log w_k
    \;\;\text{or}\;\; \frac{1}{K}\sum_k \log p(x | z_k) - \mathrm{KL}(q \,\|\, p),

the second form when the spec chose the closed-form KL. E[log p̂(x)] is the IWAE bound
L_K ≤ log p(x), increasing in K (Burda et al. 2016); K = 5000 is their evaluation
protocol. The standard error of log p̂ comes from the delta method,
se² ≈ Var(w) / (K · mean(w)²) = (K / ESS − 1) / (K − 1), with Kish's effective sample
size ESS = (Σ w)² / Σ w², all computed in float64 from weights normalised by their maximum.

Memory stays bounded: at most ``budget`` (particle, datapoint) pairs go through the decoder
at once; the K log weights of the datapoints in flight (K scalars each) are reduced in
float64 on the host.

References
----------
Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
Kong, A. (1992). A note on importance sampling using standardized weights. Tech. rep. 348,
University of Chicago (the effective sample size).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ppl_vae.data import check_data
from ppl_vae.evaluation._backend import as_index, draw_latents, float64, inference_mode, to_numpy
from ppl_vae.evaluation._lazy import lazy_jit
from ppl_vae.families import NoEncoderPosterior

DEFAULT_BUDGET = 2**13
"""Default (particle × datapoint) pairs decoded at once: ~130 MB for a 784-400 decoder.
Larger chunks were slower on CPU (2^15: about 40% lower throughput measured on both
backends), as their temporaries no longer stay in cache."""

__all__ = ["DEFAULT_BUDGET", "ChunkPlan", "ImportanceEstimate", "elbo", "importance_sample",
           "log_likelihood", "log_mean_exp", "plan_chunks"]


@dataclass(frozen=True)
class ChunkPlan:
    """How K particles × N datapoints are cut: ``num_chunks`` chunks of
    ``particles_per_chunk`` particles for ``data_per_batch`` datapoints at a time."""

    particles_per_chunk: int
    num_chunks: int
    data_per_batch: int


def plan_chunks(num_samples: int, num_data: int, budget: int = DEFAULT_BUDGET) -> ChunkPlan:
    """Balanced chunks with particles_per_chunk × data_per_batch ≤ ``budget``.

    All chunks have one size (so a compiled chunk function is reused); the last chunk may
    draw up to ``num_chunks − 1`` surplus particles, which are dropped.
    """
    for name, value in (("num_samples", num_samples), ("budget", budget),
                        ("num_data", num_data)):
        if not (isinstance(value, int | np.integer) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    num_chunks = math.ceil(num_samples / min(num_samples, budget))
    per_chunk = math.ceil(num_samples / num_chunks)
    return ChunkPlan(per_chunk, num_chunks, max(1, min(num_data, budget // per_chunk)))


def log_mean_exp(log_w: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""log-mean-exp of log weights with its delta-method standard error and the ESS.

    Returns ``(log (1/K) Σ w_k, se, ESS)`` along ``axis``, float64, with
    se = sqrt((K/ESS − 1)/(K − 1)) (NaN when K = 1) and ESS = (Σ w)²/Σ w².
    """
    log_w = np.moveaxis(np.asarray(log_w, dtype=np.float64), axis, 0)
    k = log_w.shape[0]
    top = log_w.max(axis=0)
    if not np.all(np.isfinite(top)):
        bad = int(np.flatnonzero(~np.isfinite(top))[0])
        raise FloatingPointError(f"datapoint {bad} has a NaN or +inf log importance weight, or "
                                 "none finite: its log p(x) cannot be estimated; check the "
                                 "model's parameters are finite and the data lie in the "
                                 "likelihood's support")
    w = np.exp(log_w - top)
    s1, s2 = w.sum(axis=0), np.square(w).sum(axis=0)
    ess = s1**2 / s2
    if k > 1:
        se = np.sqrt(np.maximum(k / ess - 1.0, 0.0) / (k - 1))
    else:
        se = np.full_like(s1, np.nan)
    return top + np.log(s1 / k), se, ess


@dataclass(frozen=True)
class ImportanceEstimate:
    """Per-datapoint results of :func:`importance_sample` (float64 arrays of shape (N,)).

    Attributes
    ----------
    log_likelihood, stderr : log p̂(x) in nats and its delta-method standard error.
    ess : effective sample size of the K importance weights.
    elbo, elbo_stderr : the ELBO with the spec's KL choice (``kl``) and its Monte Carlo error.
    expected_log_likelihood : E_q[log p(x | z)], the reconstruction term.
    num_samples : K.
    kl : ``"analytic"`` or ``"monte-carlo"``, the ELBO's KL term.
    log_weights : the (K, N) log weights when asked for (PSIS diagnostics), else None.
    """

    log_likelihood: np.ndarray
    stderr: np.ndarray
    ess: np.ndarray
    elbo: np.ndarray
    elbo_stderr: np.ndarray
    expected_log_likelihood: np.ndarray
    num_samples: int
    kl: str
    log_weights: np.ndarray | None = None


def importance_sample(vae: Any, x: Any, num_samples: int = 5000, *, seed: int = 0,
                      idx: Any = None, budget: int = DEFAULT_BUDGET, latents: Any = None,
                      return_log_weights: bool = False) -> ImportanceEstimate:
    """Importance-sampled log p(x) and the ELBO, per datapoint, from the same K draws of q.

    Parameters
    ----------
    vae : a VAE from :func:`ppl_vae.models.build` (either backend).
    x : ``(N, D)`` data (or ``(N, *data_shape)``).
    num_samples : K, particles per datapoint.
    seed : seeds the draws (torch's generator, forked so the caller's state is untouched,
        or a JAX key).
    idx : training-set indices of ``x``, required by encoder-free models (one stored code
        per training datapoint); such models cannot evaluate held-out data this way (use
        :func:`ppl_vae.evaluation.ais.ais_log_likelihood` with ``start="prior"``).
    budget : (particle × datapoint) pairs decoded at once; bounds memory.
    latents : optional fixed draws ``{site: (K, N, ...)}`` used instead of sampling (e.g. the
        same draws on both backends); K is then taken from them.
    return_log_weights : keep the (K, N) log weights in the result.
    """
    x = _check_inputs(vae, x, idx)
    if latents is not None:
        # Writable copies: torch warns when wrapping read-only buffers (e.g. from JAX).
        latents = {s: np.require(to_numpy(v), requirements="W") for s, v in latents.items()}
        if set(latents) != set(vae.sites):
            raise ValueError(f"latents must have the sites {list(vae.sites)}, got "
                             f"{sorted(latents)}")
        num_samples = int(next(iter(latents.values())).shape[0])
        for site, value in latents.items():
            if value.shape[:2] != (num_samples, x.shape[0]):
                raise ValueError(f"latents[{site!r}] has shape {value.shape}; expected "
                                 f"({num_samples}, {x.shape[0]}, ...) (particles, datapoints)")
    plan = plan_chunks(num_samples, x.shape[0], budget)
    batches = (_pyro_batches if vae.backend == "pyro" else _numpyro_batches)(
        vae, x, idx, num_samples, plan, seed, latents)
    analytic = vae.spec.kl == "analytic"
    n = x.shape[0]
    out = {name: np.empty(n) for name in ("lme", "se", "ess", "elbo", "elbo_se", "ell")}
    kept = np.empty((num_samples, n)) if return_log_weights else None
    for start, log_w, log_lik, kl in batches:
        stop = start + log_w.shape[1]
        sl = slice(start, stop)
        out["lme"][sl], out["se"][sl], out["ess"][sl] = log_mean_exp(log_w)
        out["ell"][sl] = log_lik.mean(axis=0)
        terms = log_lik - kl if analytic else log_w
        out["elbo"][sl] = terms.mean(axis=0)
        out["elbo_se"][sl] = (terms.std(axis=0, ddof=1) / math.sqrt(num_samples)
                              if num_samples > 1 else np.nan)
        if kept is not None:
            kept[:, sl] = log_w
    return ImportanceEstimate(
        log_likelihood=out["lme"], stderr=out["se"], ess=out["ess"], elbo=out["elbo"],
        elbo_stderr=out["elbo_se"], expected_log_likelihood=out["ell"],
        num_samples=num_samples, kl="analytic" if analytic else "monte-carlo",
        log_weights=kept)


def log_likelihood(vae: Any, x: Any, num_samples: int = 5000, *, seed: int = 0,
                   idx: Any = None, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """Importance-sampled log p(x) in nats, one float64 value per datapoint.

    See :func:`importance_sample` for the arguments and for the standard error and ESS.
    """
    return importance_sample(vae, x, num_samples, seed=seed, idx=idx,
                             budget=budget).log_likelihood


def elbo(vae: Any, x: Any, num_samples: int = 1000, *, seed: int = 0, idx: Any = None,
         budget: int = DEFAULT_BUDGET) -> tuple[np.ndarray, np.ndarray]:
    """Per-datapoint ELBO (the spec's KL choice) and its Monte Carlo standard error."""
    est = importance_sample(vae, x, num_samples, seed=seed, idx=idx, budget=budget)
    return est.elbo, est.elbo_stderr


# --------------------------------------------------------------------------- input checks


def check_x(spec: Any, x: Any) -> np.ndarray:
    """Validate data for ``spec`` and flatten it to ``(N, D)``, keeping its dtype."""
    x = to_numpy(x)
    check_data(x, data_shape=spec.data_shape, likelihood=spec.likelihood.name)
    return np.require(x.reshape(x.shape[0], -1), requirements="W")


def check_idx(spec: Any, num_data: int, idx: Any) -> None:
    """Encoder-free posteriors need the training-set indices of the data; point codes have
    no density."""
    if isinstance(spec.posterior, NoEncoderPosterior):
        if idx is None:
            raise ValueError("this model has no encoder: its posterior is one stored code per "
                             "training datapoint, so pass idx= (the rows of x in the training "
                             "set); held-out data has no code — estimate its log p(x) with "
                             "ais_log_likelihood(..., start='prior') instead")
        if spec.posterior.codes == "point":
            raise ValueError("point codes (codes = 'point') are a Dirac posterior with no "
                             "density, so log p(x, z) − log q(z) is not an importance weight; "
                             "use ais_log_likelihood(..., start='prior')")
    if idx is not None and to_numpy(idx).shape != (num_data,):
        raise ValueError(f"idx must have one index per datapoint, shape ({num_data},); "
                         f"got {to_numpy(idx).shape}")


def _check_inputs(vae: Any, x: Any, idx: Any) -> np.ndarray:
    x = check_x(vae.spec, x)
    check_idx(vae.spec, x.shape[0], idx)
    return x


# --------------------------------------------------------------------------- backends

Batch = tuple[int, np.ndarray, np.ndarray, np.ndarray]
"""(first datapoint, log weights (K, b), log p(x | z) (K, b), analytic KL (b,) or 0)."""


def _pyro_batches(vae: Any, x: np.ndarray, idx: Any, num_samples: int, plan: ChunkPlan,
                  seed: int, latents: dict | None) -> Iterator[Batch]:
    import pyro
    import torch

    # x was checked up front; Pyro's per-distribution argument and support checks would
    # otherwise scan every (particle, datapoint, pixel) value again (2x slower measured).
    # A NaN from the network still surfaces: log_mean_exp refuses non-finite weights.
    with inference_mode(vae, seed), pyro.validation_enabled(False):
        for start in range(0, x.shape[0], plan.data_per_batch):
            stop = min(start + plan.data_per_batch, x.shape[0])
            xb = vae.as_tensor(x[start:stop])
            ib = as_index(vae, None if idx is None else to_numpy(idx)[start:stop])
            log_w, log_lik = [], []
            for k0 in range(0, num_samples, plan.particles_per_chunk):
                k1 = min(k0 + plan.particles_per_chunk, num_samples)
                if latents is None:
                    lat = draw_latents(vae, xb, k1 - k0, ib, seed)
                else:
                    lat = {s: vae.as_tensor(v[k0:k1, start:stop]) for s, v in latents.items()}
                terms = vae.log_prob_terms(xb, lat, ib)
                log_lik.append(terms["log_likelihood"])
                log_w.append(terms["log_likelihood"] + terms["log_prior"] - terms["log_q"])
            kl = vae.kl(xb, ib) if vae.spec.kl == "analytic" else torch.zeros(())
            yield start, float64(torch.cat(log_w)), float64(torch.cat(log_lik)), float64(kl)


def _numpyro_batches(vae: Any, x: np.ndarray, idx: Any, num_samples: int, plan: ChunkPlan,
                     seed: int, latents: dict | None) -> Iterator[Batch]:
    import jax

    b, per_chunk, chunks = plan.data_per_batch, plan.particles_per_chunk, plan.num_chunks
    key = jax.random.PRNGKey(seed)
    pending = None
    for batch_no, start in enumerate(range(0, x.shape[0], b)):
        stop = min(start + b, x.shape[0])
        # Pad the last batch to b rows (repeating its last row) so one compiled function
        # serves every batch; the padded columns are dropped below.
        rows = np.minimum(np.arange(start, start + b), stop - 1)
        xb = vae.as_tensor(x[rows])
        ib = as_index(vae, None if idx is None else to_numpy(idx)[rows])
        if latents is None:
            keys = jax.random.split(jax.random.fold_in(key, batch_no), chunks)
            out = _jax_sampled_batch(vae, per_chunk, vae.params, xb, ib, keys)
        else:
            kpad = np.minimum(np.arange(per_chunk * chunks), num_samples - 1)
            lat = {s: vae.as_tensor(v[kpad][:, rows]).reshape(chunks, per_chunk, b,
                                                              *v.shape[2:])
                   for s, v in latents.items()}
            out = _jax_given_batch(vae, vae.params, xb, ib, lat)
        # Dispatch the next batch before waiting on this one (JAX runs asynchronously).
        if pending is not None:
            yield _finish_jax(*pending, num_samples)
        pending = (start, stop - start, out)
    if pending is not None:
        yield _finish_jax(*pending, num_samples)


def _finish_jax(start: int, size: int, out: Any, num_samples: int) -> Batch:
    log_w, log_lik, kl = (np.asarray(a, dtype=np.float64) for a in out)
    kl = kl[:size] if kl.ndim else kl
    return start, log_w[:num_samples, :size], log_lik[:num_samples, :size], kl


def _jax_terms(vae: Any, x: Any, idx: Any, lat: dict) -> tuple[Any, Any]:
    terms = vae.log_prob_terms(x, lat, idx)
    return terms["log_likelihood"] + terms["log_prior"] - terms["log_q"], terms["log_likelihood"]


def _jax_kl(vae: Any, x: Any, idx: Any) -> Any:
    import jax.numpy as jnp

    return vae.kl(x, idx) if vae.spec.kl == "analytic" else jnp.zeros((), dtype=vae.dtype)


def _flatten_chunks(log_w: Any, log_lik: Any) -> tuple[Any, Any]:
    return log_w.reshape(-1, log_w.shape[-1]), log_lik.reshape(-1, log_lik.shape[-1])


def _jax_sampled_batch_impl(vae: Any, per_chunk: int, params: dict, x: Any, idx: Any,
                            keys: Any) -> tuple[Any, Any, Any]:
    from jax import lax
    from numpyro import handlers

    def chunk(key: Any) -> tuple[Any, Any]:
        lat = vae.sample_latents(x, per_chunk, idx, seed=key)
        return _jax_terms(vae, x, idx, lat)

    with handlers.substitute(data=params):
        log_w, log_lik = lax.map(chunk, keys)
        return (*_flatten_chunks(log_w, log_lik), _jax_kl(vae, x, idx))


def _jax_given_batch_impl(vae: Any, params: dict, x: Any, idx: Any,
                          lat: dict) -> tuple[Any, Any, Any]:
    from jax import lax
    from numpyro import handlers

    with handlers.substitute(data=params):
        log_w, log_lik = lax.map(partial(_jax_terms, vae, x, idx), lat)
        return (*_flatten_chunks(log_w, log_lik), _jax_kl(vae, x, idx))


# The VAE is a static argument (hashed by identity): its parameters are passed explicitly,
# so a compiled function stays valid after set_params and is reused across calls.
_jax_sampled_batch = lazy_jit(_jax_sampled_batch_impl, (0, 1))
_jax_given_batch = lazy_jit(_jax_given_batch_impl, (0,))
