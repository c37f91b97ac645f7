r"""Per-datapoint ELBO and importance-sampled log p(x), chunked, on both backends.

With K draws z_k ~ q(z | x) and log weights log w_k = log p(x, z_k) − log q(z_k | x),

.. math::
    \log \hat p(x) = \log \frac{1}{K} \sum_{k=1}^K w_k, \qquad
    \mathrm{ELBO}(x) = \frac{1}{K} \sum_k \log w_k
    \;\;\text{or}\;\; \frac{1}{K}\sum_k \log p(x | z_k) - \mathrm{KL}(q \,\|\, p),

the second form when the spec chose the closed-form KL. For a conditional VAE every term is
conditioned on the datapoint's label c, so the estimate is of log p(x | c). E[log p̂(x)] is
the IWAE bound L_K ≤ log p(x), increasing in K (Burda et al. 2016); K = 5000 is their evaluation
protocol. The standard error of log p̂ comes from the delta method,
se² ≈ Var(w) / (K · mean(w)²) = (K / ESS − 1) / (K − 1), with Kish's effective sample
size ESS = (Σ w)² / Σ w², all computed in float64 from weights normalised by their maximum.

Memory stays bounded: at most ``budget`` (particle, datapoint) pairs go through the decoder at
once (``budget`` / 256 for a 256-way categorical likelihood, whose decoder emits 256 numbers
per pixel; fewer for a prior whose log-density holds more numbers per draw than the decoder,
such as a 500-component VampPrior, K · d = 10⁴ per draw); the K log weights of the datapoints
in flight (K scalars each) are reduced in float64 on the host. This is the package's one
importance sampler: log p(x) and the ELBO here, the PSIS k̂ of :mod:`ppl_vae.diagnostics.psis`
(which keeps the draws and the three log-density terms) and the inference gaps of
:mod:`ppl_vae.diagnostics.gaps` (which replace the encoder's output) all draw through
:func:`importance_sample`, so for the same seed, K and budget they see the same draws. The
backends supply one call per batch of datapoints (``vae.weigh``); batches are padded to one
size where the backend compiles per shape.

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
from typing import Any

import numpy as np
from tqdm import tqdm

from ppl_vae.data import check_data
from ppl_vae.models import LOG_TERMS, to_numpy
from ppl_vae.models.conditioning import check_labels

DEFAULT_BUDGET = 2**13
"""Default (particle × datapoint) pairs decoded at once: ~130 MB for a 784-400 decoder.
Larger chunks were slower on CPU (2^15: about 40% lower throughput measured on both
backends), as their temporaries no longer stay in cache."""

__all__ = ["DEFAULT_BUDGET", "ChunkPlan", "ImportanceEstimate", "elbo", "importance_sample",
           "check_inputs", "log_likelihood", "log_mean_exp", "plan_chunks", "sampler_plan"]


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
    rate, rate_stderr : the rate KL(q(z | x) ‖ p(z)) in nats over all latent sites (gate and
        slab of masked codes): the closed form (stderr 0) when ``kl`` is analytic, else the
        Monte Carlo mean of log q(z_k | x) − log p(z_k) over the K draws and its standard
        error (NaN when K = 1).
    num_samples : K.
    kl : ``"analytic"`` or ``"monte-carlo"``, the ELBO's KL term.
    log_weights : the (K, N) log weights when asked for, else None.
    terms : with ``keep_draws``, the (K, N) float64 ``log_likelihood``, ``log_prior`` and
        ``log_q`` of every draw, else None.
    draws : with ``keep_draws``, the draws ``{site: (K, N, ...)}`` (float64), else None.
    """

    log_likelihood: np.ndarray
    stderr: np.ndarray
    ess: np.ndarray
    elbo: np.ndarray
    elbo_stderr: np.ndarray
    expected_log_likelihood: np.ndarray
    rate: np.ndarray
    rate_stderr: np.ndarray
    num_samples: int
    kl: str
    log_weights: np.ndarray | None = None
    terms: dict[str, np.ndarray] | None = None
    draws: dict[str, np.ndarray] | None = None


def importance_sample(vae: Any, x: Any, num_samples: int = 5000, *, seed: int = 0,
                      idx: Any = None, budget: int = DEFAULT_BUDGET, latents: Any = None,
                      return_log_weights: bool = False, keep_draws: bool = False,
                      encoder_output: Any = None, c: Any = None,
                      progress: bool = False) -> ImportanceEstimate:
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
    budget : (particle × datapoint) pairs decoded at once, fewer where a pair holds more
        numbers (see :func:`pairs_per_chunk`); bounds memory.
    latents : optional fixed draws ``{site: (K, N, ...)}`` used instead of sampling (e.g. the
        same draws on both backends); K is then taken from them.
    return_log_weights : keep the (K, N) log weights in the result.
    keep_draws : keep the draws and the three log-density terms (PSIS diagnostics).
    encoder_output : ``(N, encoder size)`` guide parameters h that replace the encoder's
        output, q_h(z | x) (the inference gaps' optimized posteriors). Equal seeds give equal
        base noise for different h: common random numbers.
    c : ``(N,)`` integer class labels of ``x``, required by a conditioned model (then every
        estimate is of log p(x | c)); None otherwise.
    progress : show a progress bar over the datapoints (tqdm, with the time left) when
        stderr is a terminal.
    """
    x, c = check_inputs(vae.spec, x, idx, c)
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
    plan = sampler_plan(vae.spec, num_samples, x.shape[0], budget)
    analytic = vae.spec.kl == "analytic"
    n = x.shape[0]
    out = {name: np.empty(n) for name in ("lme", "se", "ess", "elbo", "elbo_se", "ell", "rate",
                                          "rate_se")}
    kept = np.empty((num_samples, n)) if return_log_weights else None
    terms: dict[str, np.ndarray] = {}
    draws: dict[str, np.ndarray] = {}
    bar = tqdm(total=n, unit="datapoint", disable=None if progress else True, leave=False,
               desc=f"importance sampling, K = {num_samples}")
    for start, values, kl in _batches(vae, x, idx, num_samples, plan, seed, latents,
                                      encoder_output, keep_draws, c):
        log_w, log_lik = values["log_weight"], values["log_likelihood"]
        stop = start + log_w.shape[1]
        bar.update(stop - start)
        sl = slice(start, stop)
        out["lme"][sl], out["se"][sl], out["ess"][sl] = log_mean_exp(log_w)
        out["ell"][sl] = log_lik.mean(axis=0)
        elbo_terms = log_lik - kl if analytic else log_w
        out["elbo"][sl], out["elbo_se"][sl] = _mean_and_stderr(elbo_terms)
        if analytic:
            out["rate"][sl], out["rate_se"][sl] = kl, 0.0
        else:
            out["rate"][sl], out["rate_se"][sl] = _mean_and_stderr(log_lik - log_w)
        if kept is not None:
            kept[:, sl] = log_w
        if keep_draws:
            _store(terms, draws, values, sl, num_samples, n)
    bar.close()
    return ImportanceEstimate(
        log_likelihood=out["lme"], stderr=out["se"], ess=out["ess"], elbo=out["elbo"],
        elbo_stderr=out["elbo_se"], expected_log_likelihood=out["ell"], rate=out["rate"],
        rate_stderr=out["rate_se"], num_samples=num_samples,
        kl="analytic" if analytic else "monte-carlo", log_weights=kept,
        terms=terms if keep_draws else None,
        draws=draws if keep_draws else None)


def pairs_per_chunk(spec: Any, budget: int) -> int:
    """(particle, datapoint) pairs per chunk: memory follows the numbers one pair holds, D for
    a decoder with one output per data value (``budget`` pairs), D · P for a likelihood with
    P outputs per value (256 for the categorical), and ``prior.log_prob_size(d)`` for the
    prior's log-density (K · d for a K-component mixture or VampPrior), whichever is most."""
    per_pair = max(spec.likelihood.outputs_per_value * spec.data_dim,
                   spec.prior.log_prob_size(spec.latent_dim))
    return max(1, budget * spec.data_dim // per_pair)


def _mean_and_stderr(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the K draws (axis 0) and its standard error (NaN when K = 1)."""
    k = values.shape[0]
    se = values.std(axis=0, ddof=1) / math.sqrt(k) if k > 1 else np.full(values.shape[1:],
                                                                         np.nan)
    return values.mean(axis=0), se


def _store(terms: dict, draws: dict, values: dict[str, np.ndarray], sl: slice,
           num_samples: int, n: int) -> None:
    """Copy a batch's log-density terms and draws (``draw:<site>``) into the (K, N) tables."""
    for name, value in values.items():
        if name in LOG_TERMS or name.startswith("draw:"):
            table = terms if name in LOG_TERMS else draws
            key = name.removeprefix("draw:")
            if key not in table:
                table[key] = np.empty((num_samples, n, *value.shape[2:]))
            table[key][:, sl] = value


def log_likelihood(vae: Any, x: Any, num_samples: int = 5000, *, seed: int = 0,
                   idx: Any = None, budget: int = DEFAULT_BUDGET, c: Any = None) -> np.ndarray:
    """Importance-sampled log p(x) (log p(x | c) given labels ``c``) in nats, one float64
    value per datapoint.

    See :func:`importance_sample` for the arguments and for the standard error and ESS.
    """
    return importance_sample(vae, x, num_samples, seed=seed, idx=idx, budget=budget,
                             c=c).log_likelihood


def elbo(vae: Any, x: Any, num_samples: int = 1000, *, seed: int = 0, idx: Any = None,
         budget: int = DEFAULT_BUDGET, c: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-datapoint ELBO (the spec's KL choice) and its Monte Carlo standard error."""
    est = importance_sample(vae, x, num_samples, seed=seed, idx=idx, budget=budget, c=c)
    return est.elbo, est.elbo_stderr


# --------------------------------------------------------------------------- input checks


def check_x(spec: Any, x: Any) -> np.ndarray:
    """Validate data for ``spec`` and flatten it to ``(N, D)``, keeping its dtype."""
    x = to_numpy(x)
    check_data(x, data_shape=spec.data_shape, likelihood=spec.likelihood)
    return np.require(x.reshape(x.shape[0], -1), requirements="W")


def check_idx(spec: Any, num_data: int, idx: Any) -> None:
    """Encoder-free posteriors need the training-set indices of the data; point codes have
    no density."""
    if not spec.posterior.amortized:
        if idx is None:
            raise ValueError("this model has no encoder: its posterior is one stored code per "
                             "training datapoint, so pass idx= (the rows of x in the training "
                             "set); held-out data has no code — estimate its log p(x) with "
                             "ais_log_likelihood(..., start='prior') instead")
        if not spec.posterior.has_density:
            raise ValueError("point codes (codes = 'point') are a Dirac posterior with no "
                             "density, so log p(x, z) − log q(z) is not an importance weight; "
                             "use ais_log_likelihood(..., start='prior')")
    if idx is not None and to_numpy(idx).shape != (num_data,):
        raise ValueError(f"idx must have one index per datapoint, shape ({num_data},); "
                         f"got {to_numpy(idx).shape}")


def sampler_plan(spec: Any, num_samples: int, num_data: int,
                 budget: int = DEFAULT_BUDGET) -> ChunkPlan:
    """The chunks :func:`importance_sample` cuts K particles × N datapoints of ``spec`` into:
    :func:`plan_chunks` with the pairs a chunk may hold for this spec (:func:`pairs_per_chunk`)."""
    return plan_chunks(num_samples, num_data, pairs_per_chunk(spec, budget))


def check_inputs(spec: Any, x: Any, idx: Any = None, c: Any = None, *, codes: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The data every evaluation entry point takes, checked once for ``spec``: ``x`` flattened
    (:func:`check_x`), the training indices an encoder-free model needs where the caller reads
    its stored codes (``codes``; :func:`check_idx`) and a conditioned model's labels
    (:func:`~ppl_vae.models.conditioning.check_labels`)."""
    x = check_x(spec, x)
    if codes:
        check_idx(spec, x.shape[0], idx)
    return x, check_labels(spec, c, x.shape[0])


# --------------------------------------------------------------------------- batches

Batch = tuple[int, dict[str, np.ndarray], np.ndarray]
"""(first datapoint, float64 values ``(K, b)`` by name as in ``vae.weigh``, analytic KL
``(b,)`` or 0)."""


def _batches(vae: Any, x: np.ndarray, idx: Any, num_samples: int, plan: ChunkPlan, seed: int,
             latents: dict | None, h: Any, keep_draws: bool, c: np.ndarray | None
             ) -> Iterator[Batch]:
    """Datapoints ``plan.data_per_batch`` at a time; where the backend compiles per shape the
    last batch is padded to the same size (repeating its last row) and the padding dropped."""
    b = plan.data_per_batch
    idx = None if idx is None else to_numpy(idx)
    h = None if h is None else to_numpy(h)
    pending = None
    with vae.inference(seed):
        for number, start in enumerate(range(0, x.shape[0], b)):
            stop = min(start + b, x.shape[0])
            rows = (np.minimum(np.arange(start, start + b), stop - 1) if vae.compiled
                    else np.arange(start, stop))
            out = vae.weigh(x[rows], None if idx is None else idx[rows], num_samples,
                            plan.particles_per_chunk, seed, number,
                            latents=None if latents is None else
                            {s: v[:, rows] for s, v in latents.items()},
                            h=None if h is None else h[rows], keep_draws=keep_draws,
                            c=None if c is None else c[rows])
            # Dispatch the next batch before waiting on this one (JAX runs asynchronously).
            if pending is not None:
                yield _finish(*pending, num_samples)
            pending = (start, stop - start, out)
        if pending is not None:
            yield _finish(*pending, num_samples)


def _finish(start: int, size: int, out: tuple[dict, Any], num_samples: int) -> Batch:
    values, kl = out
    kl = np.asarray(to_numpy(kl), dtype=np.float64)
    return (start, {k: np.asarray(to_numpy(v), dtype=np.float64)[:num_samples, :size]
                    for k, v in values.items()}, kl[:size] if kl.ndim else kl)
