r"""Inference gaps of an amortized posterior (Cremer et al. 2018).

For a datapoint x with amortized guide q_φ(z | x) and the best member q* of the same
family for that datapoint alone,

.. math::
    \log p(x) - \mathcal L[q_φ] =
    \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q_φ]}_{\text{amortization gap}},

both ≥ 0 (L is the ELBO). q* is found by optimizing the guide's own parameterization —
the encoder's output vector h (location and raw scale, plus gate logits for relaxed
masked codes) — per datapoint, starting at the encoder's output, with Adam on a cosine-
decayed step size. Adam acts elementwise, so one optimizer over all datapoints is B
independent optimizations. Gradients are sticking-the-landing (Roeder et al. 2017): the
score term of log q is dropped, so the gradient vanishes exactly where q equals the
posterior. Since stochastic steps can still move away from a q that is already optimal,
the final iterate replaces the start only if its ELBO is higher on fresh draws
(the start is one candidate of the arg max); the reported ELBOs use yet other draws.

The ELBOs are estimated by the package's importance sampler
(:func:`ppl_vae.evaluation.importance_sample` with the encoder's output replaced by h):
q_φ and q* use the same seed, so the same base noise (common random numbers) and the
amortization gap's Monte Carlo error is that of a paired difference. log p(x) is an exact
value when given, else the larger of two IWAE estimates (Burda et al. 2016), with proposals
q_φ and q* — each a stochastic lower bound on log p(x), the better proposal giving the
tighter one.

Runs in JAX; a Pyro VAE is copied into a NumPyro VAE with the same parameters
(:func:`ppl_vae.models.as_numpyro`).

References
----------
Cremer, C., Li, X. & Duvenaud, D. (2018). Inference suboptimality in variational
autoencoders. ICML.
Roeder, G., Wu, Y. & Duvenaud, D. (2017). Sticking the landing: simple, lower-variance
gradient estimators for variational inference. NeurIPS.
Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.diagnostics.mcmc import check_continuous_latents
from ppl_vae.evaluation.importance import importance_sample, log_mean_exp
from ppl_vae.models import as_numpyro

__all__ = ["GapResult", "inference_gaps"]


@dataclass(frozen=True)
class GapResult:
    """Per-datapoint gaps and what they were computed from.

    Attributes
    ----------
    table : one row per datapoint: ``log_px`` (+ ``log_px_se``, ``log_px_source``),
        ``elbo_amortized``, ``elbo_optimized``, ``gap_amortization``,
        ``gap_approximation``, each with a Monte Carlo standard error ``*_se``, and
        ``improved`` (whether the optimized q replaced the amortized one).
    amortized, optimized : ``(B, encoder_size)`` guide parameters h before and after.
    trace : ``(num_steps,)`` mean per-datapoint ELBO estimate during the optimization.
    """

    table: pd.DataFrame
    amortized: np.ndarray
    optimized: np.ndarray
    trace: np.ndarray


def inference_gaps(vae: Any, x: Any, *, datapoints: Any = None, log_px: Any = None,
                   num_steps: int = 1000, learning_rate: float = 0.05, num_particles: int = 16,
                   num_eval_samples: int = 2000, num_likelihood_samples: int = 2000,
                   seed: int = 0) -> GapResult:
    """Approximation and amortization gaps per datapoint.

    Parameters
    ----------
    vae : an amortized VAE (encoder) of either backend with reparameterized latents.
    x : ``(B, D)`` data.
    datapoints : ``(B,)`` labels for the table (default ``0..B-1``).
    log_px : optional exact log p(x) per datapoint (e.g. the PPCA closed form). Otherwise
        the larger of the IWAE estimates with proposal q_φ (``num_likelihood_samples``
        draws) and q* (the evaluation draws). Both are stochastic lower bounds, so the
        approximation gap is then underestimated by log p(x) − IWAE (→ 0 as the draws
        grow); its se treats log p(x) and the ELBO as independent, which overstates it when
        both come from the same draws.
    num_steps, learning_rate, num_particles : the per-datapoint optimization (Adam, cosine
        decay of the step size to zero, ``num_particles`` draws per step).
    num_eval_samples : draws for each ELBO estimate (and for the selection of q*).
    """
    import jax
    import jax.numpy as jnp

    from ppl_vae.models.numpyro_backend import compiled

    spec = vae.spec
    if not spec.posterior.amortized:
        raise ValueError(f"model {spec.name!r} has no encoder (posterior 'none'): its "
                         "per-datapoint codes are already optimized one by one, so there is "
                         "no amortization gap to measure")
    check_continuous_latents(spec)
    for name, value in (("num_steps", num_steps), ("num_particles", num_particles),
                        ("num_eval_samples", num_eval_samples)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
    nvae = as_numpyro(vae)
    x_np = np.asarray(x)
    if x_np.ndim != 2 or x_np.shape[1] != spec.data_dim:
        raise ValueError(f"x must have shape (B, {spec.data_dim}), got {x_np.shape}")
    datapoints = np.arange(len(x_np)) if datapoints is None else np.asarray(datapoints)
    xj = nvae.as_tensor(x_np)

    h0 = nvae.compute(_encoder_output, (), xj)
    h_final, trace = compiled(_optimize_impl, (0, 1, 2, 3))(
        nvae, num_steps, learning_rate, num_particles, nvae.params, xj, h0,
        jax.random.PRNGKey(seed))
    # Select between start and final iterate on draws independent of the evaluation's.
    select_seed, eval_seed = (int(s) for s in np.random.SeedSequence([seed, 1]).generate_state(2))
    sel = [_log_weights(nvae, x_np, h, num_eval_samples, select_seed) for h in (h0, h_final)]
    improved = sel[1].mean(0) > sel[0].mean(0)
    h_opt = jnp.where(jnp.asarray(improved)[:, None], h_final, h0)

    lw = [_log_weights(nvae, x_np, h, num_eval_samples, eval_seed) for h in (h0, h_opt)]
    root = math.sqrt(num_eval_samples)
    elbo_am, elbo_opt = lw[0].mean(0), lw[1].mean(0)
    se_am, se_opt = lw[0].std(0, ddof=1) / root, lw[1].std(0, ddof=1) / root
    se_diff = (lw[1] - lw[0]).std(0, ddof=1) / root

    if log_px is not None:
        log_px = np.broadcast_to(np.asarray(log_px, dtype=np.float64), elbo_am.shape)
        log_px_se, source = np.zeros_like(log_px), np.full(log_px.shape, "exact")
    else:
        log_px, log_px_se, source = _estimate_log_px(vae, x_np, lw[1], num_likelihood_samples,
                                                     seed)
    table = pd.DataFrame({
        "datapoint": datapoints, "log_px": log_px, "log_px_se": log_px_se,
        "log_px_source": source,
        "elbo_amortized": elbo_am, "elbo_amortized_se": se_am,
        "elbo_optimized": elbo_opt, "elbo_optimized_se": se_opt,
        "gap_amortization": elbo_opt - elbo_am, "gap_amortization_se": se_diff,
        "gap_approximation": log_px - elbo_opt,
        "gap_approximation_se": np.sqrt(log_px_se**2 + se_opt**2),
        "improved": improved})
    return GapResult(table=table, amortized=np.asarray(h0), optimized=np.asarray(h_opt),
                     trace=np.asarray(trace, dtype=np.float64))


def _estimate_log_px(vae: Any, x: np.ndarray, log_w_optimized: np.ndarray, num_samples: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The larger of the IWAE estimates with q_φ and with q* as proposal, and its se."""
    amortized = importance_sample(vae, x, num_samples, seed=seed)
    lme, se, _ = log_mean_exp(log_w_optimized)
    use_opt = lme > amortized.log_likelihood
    return (np.where(use_opt, lme, amortized.log_likelihood),
            np.where(use_opt, se, amortized.stderr),
            np.where(use_opt, "iwae-optimized-q", "iwae-amortized-q"))


def _log_weights(nvae: Any, x: np.ndarray, h: Any, num: int, seed: int) -> np.ndarray:
    """``(num, B)`` float64 log p(x, z) − log q_h(z) of the importance sampler's draws."""
    return importance_sample(nvae, x, num, seed=seed, encoder_output=h,
                             return_log_weights=True).log_weights


# Functions compiled by ppl_vae.models.numpyro_backend.compiled (module level: static keys).


def _encoder_output(nvae: Any, x: Any) -> Any:
    return nvae.encoder_output(x)


def _stl_log_weights(nvae: Any, num: int, x: Any, h: Any, key: Any) -> Any:
    """log p(x, z) − log q_{⊥h}(z) for ``num`` draws z ~ q_h per datapoint, ``(num, B)``:
    log q sees ``h`` through ``stop_gradient``, the draws do not (sticking the landing)."""
    import jax

    latents = nvae.sample_latents(x, num, seed=key, h=h)
    terms = nvae.log_prob_terms(x, latents, h=jax.lax.stop_gradient(h))
    return terms["log_likelihood"] + terms["log_prior"] - terms["log_q"]


def _optimize_impl(nvae: Any, num_steps: int, learning_rate: float, num_particles: int,
                   params: dict, x: Any, h0: Any, key: Any) -> tuple[Any, Any]:
    import jax
    import optax
    from numpyro import handlers

    schedule = optax.cosine_decay_schedule(learning_rate, num_steps)
    optimizer = optax.adam(schedule)

    def loss(h: Any, k: Any) -> tuple[Any, Any]:
        with handlers.substitute(data=params):
            elbo = _stl_log_weights(nvae, num_particles, x, h, k).mean(0)
        return -elbo.sum(), elbo.mean()

    def step(carry: tuple[Any, Any], k: Any) -> tuple[tuple[Any, Any], Any]:
        h, state = carry
        grads, elbo = jax.grad(loss, has_aux=True)(h, k)
        updates, state = optimizer.update(grads, state, h)
        return (optax.apply_updates(h, updates), state), elbo

    keys = jax.random.split(key, num_steps)
    (h, _), trace = jax.lax.scan(step, (h0, optimizer.init(h0)), keys)
    return h, trace
