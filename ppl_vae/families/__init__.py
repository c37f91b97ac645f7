"""Posterior, prior and likelihood families, written once for both backends.

A family is a small frozen dataclass that imports no array library. It knows

* which latent sample sites it creates and how they combine into the code ``z``;
* how raw network outputs map to distribution parameters (every scale is
  ``softplus(h) + floor``, Shu 2018, so no variance can collapse to zero);
* the initial values of the parameters it owns (NumPy, so both backends start equal);
* whether a closed-form KL against a given prior exists: a location-scale posterior and a
  factorized location-scale prior of the same distribution (``distribution_name``);
* its capabilities, as flags callers read instead of checking types: a posterior's
  ``amortized`` (has an encoder), ``has_density`` (log q(z | x) exists: not for point codes),
  ``continuous`` (every latent site real-valued: NUTS and the gap optimization need it) and
  ``gated`` (masked codes); a prior's ``factorized`` (a product over latent dimensions, so KL
  per dimension is defined) and ``uses_encoder`` (the prior mixes the guide's q(z | u), so it
  needs an encoder and one code site: the VampPrior); a likelihood's ``data_kind`` (binary,
  continuous or eight-bit data: what data checks, preparation and units read) and
  ``data_range`` (the bounds of the data, or None).

Modules: :mod:`~ppl_vae.families.posteriors`, :mod:`~ppl_vae.families.priors` (with the
per-class tables of a conditional VAE's prior), :mod:`~ppl_vae.families.learned_priors`
(VampPrior, autoregressive flow), :mod:`~ppl_vae.families.likelihoods`. This package's
``POSTERIORS``, ``PRIORS`` and ``LIKELIHOODS`` are the one table from spec names to types.

Distributions are built through ``ops``, a namespace each backend supplies
(``ops.dist`` is ``pyro.distributions`` or ``numpyro.distributions``; the two share
the names used here). Hence the math below runs unchanged under torch and JAX.

Site names, identical on both backends:

========  ===================================================================
``z``     the latent code (Gaussian, Laplace and encoder-free posteriors)
``gate``  masked codes: per-dimension gate m in {0, 1} (or (0, 1) when relaxed)
``slab``  masked codes: the value s; the code is ``z = gate * slab``
``x``     the observation
========  ===================================================================
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ppl_vae.families.base import INV_SOFTPLUS_ONE, positive
from ppl_vae.families.learned_priors import AutoregressiveFlowPrior, VampPrior
from ppl_vae.families.likelihoods import Bernoulli, Categorical256, DiscretizedLogistic, Gaussian
from ppl_vae.families.posteriors import (
    GaussianPosterior,
    LaplacePosterior,
    MaskedPosterior,
    NoEncoderPosterior,
    laplace_kl,
    relaxed_bernoulli_mean,
)
from ppl_vae.families.priors import (
    LearnedLaplace,
    LearnedNormal,
    MixtureOfGaussians,
    StandardLaplace,
    StandardNormal,
    class_prior_params,
    class_rows,
)

__all__ = ["INV_SOFTPLUS_ONE", "LIKELIHOODS", "POSTERIORS", "PRIORS", "AutoregressiveFlowPrior",
           "Bernoulli", "Categorical256", "DiscretizedLogistic", "Gaussian", "GaussianPosterior",
           "LaplacePosterior", "LearnedLaplace", "LearnedNormal", "MaskedPosterior",
           "MixtureOfGaussians", "NoEncoderPosterior", "StandardLaplace", "StandardNormal",
           "VampPrior", "class_prior_params", "class_rows", "closed_form_pairs", "family_options",
           "has_closed_form_kl", "laplace_kl", "likelihood_family", "positive",
           "relaxed_bernoulli_mean"]

POSTERIORS: dict[str, type] = {
    c.name: c for c in (GaussianPosterior, LaplacePosterior, MaskedPosterior, NoEncoderPosterior)
}
PRIORS: dict[str, type] = {
    c.name: c
    for c in (StandardNormal, StandardLaplace, LearnedNormal, LearnedLaplace, MixtureOfGaussians,
              VampPrior, AutoregressiveFlowPrior)
}
LIKELIHOODS: dict[str, type] = {
    c.name: c for c in (Bernoulli, Gaussian, DiscretizedLogistic, Categorical256)
}
"""The one place where names in a TOML spec map to family types."""


def has_closed_form_kl(posterior: Any, prior: Any) -> bool:
    """Whether KL(q ‖ p) has a closed form registered on both backends: a location-scale
    posterior against a factorized location-scale prior of the same distribution (Normal /
    Normal, Laplace / Laplace; NumPyro's Laplace pair is :func:`laplace_kl`)."""
    name = getattr(posterior, "distribution_name", None)
    return name is not None and prior.factorized and name == getattr(prior, "distribution_name",
                                                                      None)


def closed_form_pairs() -> list[tuple[str, str]]:
    """(posterior, prior) names with an analytic KL, for error messages and docs."""
    return sorted((q.name, p.name) for q in POSTERIORS.values() for p in PRIORS.values()
                  if has_closed_form_kl(q, p))


def family_options(cls: type) -> tuple[str, ...]:
    """The TOML keys a family accepts besides ``family``."""
    return tuple(f.name for f in fields(cls))


def likelihood_family(likelihood: Any) -> Any:
    """A likelihood family from an instance or its spec name (``"bernoulli"``, ...), for the
    functions that take either; an unknown name is a ``ValueError`` listing the known ones."""
    if not isinstance(likelihood, str):
        return likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; "
                         f"got {likelihood!r}")
    return LIKELIHOODS[likelihood]()
