"""Build a VAE from a spec on either backend.

>>> import ppl_vae.models
>>> vae = ppl_vae.models.build("laplace_laplace", backend="numpyro")
>>> svi = numpyro.infer.SVI(vae.model, vae.guide, optax.adam(1e-3), numpyro.infer.Trace_ELBO())

``vae.model(x, idx=None, num_data=None)`` and ``vae.guide(...)`` are ordinary Pyro /
NumPyro programs with a ``data`` plate (dim −1) over the minibatch. Site names on both
backends: ``z`` (the code), ``gate`` and ``slab`` (masked codes; ``z`` is then a
deterministic site), ``x`` (the observation). Parameter names (``encoder.0.weight``,
``decoder.1.bias``, ``prior.loc``, ``likelihood.scale_raw``, ``codes.loc``, ...) are
shared too, so ``numpyro_vae.set_params(pyro_vae.get_params())`` copies a model across.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from ppl_vae.estimators import get_estimator
from ppl_vae.models import objectives
from ppl_vae.models._core import LOG_TERMS, VAECore, float64, init_params, to_numpy
from ppl_vae.models.zoo import load_spec, zoo_names
from ppl_vae.spec import ModelSpec

BACKENDS = ("pyro", "numpyro")

__all__ = ["BACKENDS", "LOG_TERMS", "VAECore", "as_numpyro", "build", "convert", "float64",
           "init_params", "load_spec", "make_elbo", "program_elbo", "to_numpy", "zoo_names"]


def build(spec: ModelSpec | str | Path, backend: str = "pyro", *, seed: int = 0,
          num_data: int | None = None, dtype: str = "float32", device: str = "cpu",
          score_function_sites: tuple[str, ...] = ()) -> Any:
    """Build a VAE with ``.model`` and ``.guide`` for ``backend`` ("pyro" or "numpyro").

    Parameters
    ----------
    spec : a ModelSpec, a path to a TOML spec, or a zoo name (see :func:`zoo_names`).
    seed : seeds the initial weights; equal seeds give equal weights on both backends.
    num_data : training-set size; required by encoder-free posteriors (one code per point).
    dtype : "float32" or "float64".
    device : Pyro only: "cpu", "cuda" or "auto" (NumPyro uses JAX's default device).
    score_function_sites : latent sites whose gradients use the score function.
    """
    spec = load_spec(spec)
    params = init_params(spec, seed=seed, num_data=num_data)
    if backend == "pyro":
        import torch

        from ppl_vae.models.pyro_backend import PyroVAE

        return PyroVAE(spec, params, dtype=getattr(torch, dtype), device=device,
                       score_function_sites=score_function_sites)
    if backend == "numpyro":
        from ppl_vae.models.numpyro_backend import NumPyroVAE

        if device not in ("cpu", "auto"):
            raise ValueError("the NumPyro backend runs on JAX's default device; choose it with "
                             "JAX_PLATFORMS (e.g. JAX_PLATFORMS=cuda) instead of device=")
        return NumPyroVAE(spec, params, dtype=dtype, score_function_sites=score_function_sites)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def convert(vae: VAECore, backend: str, *, dtype: str | None = None) -> Any:
    """The same model on another backend: same spec, same parameter values.

    Used where one backend has the tool (e.g. NumPyro's NUTS and AIS for a Pyro-trained VAE).
    ``dtype`` defaults to the source model's, except that a float64 model becomes float32 on
    NumPyro unless JAX runs in 64-bit mode (``jax_enable_x64``).
    """
    if vae.backend == backend and dtype is None:
        return vae
    params = vae.get_params()
    num_data = params["codes.loc"].shape[0] if "codes.loc" in params else None
    if dtype is None:
        dtype = vae.dtype_name
        if backend == "numpyro" and dtype == "float64":
            import jax

            dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    other = build(vae.spec, backend, num_data=num_data, dtype=dtype,
                  score_function_sites=vae.score_function_sites)
    other.set_params(params)
    return other


def as_numpyro(vae: VAECore) -> Any:
    """The VAE itself on NumPyro; for a Pyro VAE a NumPyro copy with its current weights.

    The tools that exist only in JAX (NUTS reference posteriors, AIS, the gap optimization)
    run on it. One copy is kept per Pyro VAE and refreshed at each call, so functions compiled
    for it (static in the model) are reused.
    """
    if vae.backend == "numpyro":
        return vae
    copy = _NUMPYRO_COPIES.get(vae)
    if copy is None:
        copy = _NUMPYRO_COPIES[vae] = convert(vae, "numpyro")
    else:
        copy.set_params(vae.get_params())
    return copy


_NUMPYRO_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_elbo(vae: VAECore, estimator: Any = "reparam", num_particles: int = 1,
              example_batch: Any = None, *, kl_weighting: bool = False, free_bits: float = 0.0,
              **example_kwargs: Any) -> tuple[Any, Any]:
    """The backend ELBO for a named estimator and the guide to use with it.

    Refuses ``analytic-kl`` unless the spec chose ``kl = "analytic"`` (so a missing closed
    form never silently becomes Monte Carlo). On NumPyro, ``example_batch`` is used to trace
    the guide once and pick an unbiased ELBO for non-reparameterized sites.

    With ``kl_weighting`` or ``free_bits`` > 0 (nats per latent dimension) the ELBO is the
    backends' ``KLWeighted_ELBO`` (:func:`~ppl_vae.models.objectives.kl_weighted_loss`):
    E_q[log p(x | z)] − w · Σ_j max(λ, KL̄_j), w passed per call as the keyword
    ``kl_weight`` (β, or a warm-up's β_t; default 1), the KL Monte Carlo for ``reparam`` and
    closed-form for ``analytic-kl``. Refused (``ValueError``, saying why and what to use) for
    the other estimators, for guides with non-reparameterized sites, for point codes, and,
    with free bits, for a prior that does not factorize over latent dimensions.
    """
    estimator = get_estimator(estimator)
    free_bits = objectives.check_free_bits(free_bits)
    if kl_weighting or free_bits > 0:
        return _kl_weighted_elbo(vae, estimator, num_particles, free_bits)
    discrete = [site for site in vae.sites if site in vae.score_function_sites
                or (site == "gate" and not vae.spec.posterior.continuous)]
    if estimator.reparameterized_only and discrete:
        raise objectives.reparameterized_only_error(estimator.name, discrete)
    _require_closed_form(vae, estimator)
    if vae.backend == "pyro":
        from ppl_vae.models.pyro_elbos import make_elbo as backend_make_elbo

        return backend_make_elbo(estimator, vae.guide, num_particles)
    from ppl_vae.models.numpyro_elbos import make_elbo as backend_make_elbo

    if example_batch is None:
        raise ValueError("on the NumPyro backend pass example_batch= (a minibatch) so the "
                         "guide can be checked for non-reparameterized sites")
    return backend_make_elbo(estimator, vae.guide, num_particles,
                             example_args=(vae.as_tensor(example_batch),),
                             example_kwargs=example_kwargs)


def _require_closed_form(vae: VAECore, estimator: Any) -> None:
    if estimator.closed_form_kl and vae.spec.kl != "analytic":
        raise ValueError(f"estimator 'analytic-kl' needs a closed-form KL, but spec "
                         f"{vae.spec.name!r} has kl = {vae.spec.kl!r}; use 'reparam'")


def _kl_weighted_elbo(vae: VAECore, estimator: Any, num_particles: int,
                      free_bits: float) -> tuple[Any, Any]:
    """:func:`make_elbo`'s KL-weighted ELBO; every refusal decided from the spec, before any
    run. Free bits need a KL per latent dimension: the posteriors with a density are
    products over dimensions (``Independent`` sites over elementwise bases), so the prior
    decides, by its family's ``factorized`` flag (False for the mixture, VampPrior and flow);
    the ELBOs check the sites' distributions again at run time."""
    from ppl_vae.estimators import AnalyticKL, Reparam

    spec = vae.spec
    if not isinstance(estimator, Reparam | AnalyticKL):
        raise objectives.kl_options_estimator_error(estimator)
    discrete = [site for site in vae.sites if site in vae.score_function_sites
                or (site == "gate" and not spec.posterior.continuous)]
    if discrete:
        raise objectives.kl_options_non_reparameterized_error(discrete)
    if not spec.posterior.has_density:
        raise objectives.kl_options_no_density_error(spec.posterior.name)
    if free_bits > 0 and not spec.prior.factorized:
        raise objectives.not_factorized_error(f"prior {spec.prior.name!r}")
    _require_closed_form(vae, estimator)
    options = {"analytic": estimator.closed_form_kl, "free_bits": free_bits}
    if vae.backend == "pyro":
        from ppl_vae.models.pyro_elbos import KLWeighted_ELBO

        return KLWeighted_ELBO(num_particles, max_plate_nesting=1, **options), vae.guide
    from ppl_vae.models.numpyro_elbos import KLWeighted_ELBO

    return KLWeighted_ELBO(num_particles, **options), vae.guide


def program_elbo(model: Any, guide: Any, estimator: Any, num_particles: int, backend: str,
                 args: tuple = (), kwargs: dict | None = None) -> tuple[Any, Any]:
    """The ELBO and guide for ``estimator`` on any Pyro or NumPyro model/guide pair called
    with ``args`` and ``kwargs``: :func:`make_elbo` when they are a VAE's own programs;
    otherwise the backend's ELBO, ``analytic-kl`` only where every site has a closed-form KL
    (checked on one run), and the number of plates guessed from one run on Pyro."""
    kwargs = kwargs or {}
    estimator = get_estimator(estimator)
    owner = getattr(model, "__self__", None)
    if isinstance(owner, VAECore) and guide == owner.guide:
        return make_elbo(owner, estimator, num_particles, example_batch=args[0], **kwargs)
    if backend == "pyro":
        from ppl_vae.models import pyro_elbos as elbos

        options: dict[str, Any] = {"max_plate_nesting": float("inf")}
    else:
        from ppl_vae.models import numpyro_elbos as elbos

        options = {"example_args": args, "example_kwargs": kwargs}
    if estimator.closed_form_kl:
        elbos.check_closed_form_kl(model, guide, *args, **kwargs)
    return elbos.make_elbo(estimator, guide, num_particles, **options)
