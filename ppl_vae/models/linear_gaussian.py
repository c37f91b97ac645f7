r"""The ``linear_gaussian`` zoo model set to probabilistic PCA (Tipping & Bishop 1999), whose
log p(x) and posterior have closed forms (:mod:`ppl_vae.data.ppca`): the reference that
estimators and diagnostics are tested against."""

from __future__ import annotations

from typing import Any

import numpy as np

from ppl_vae.data.ppca import inverse_softplus
from ppl_vae.families import Gaussian, GaussianPosterior, StandardNormal
from ppl_vae.models.zoo import load_spec

__all__ = ["linear_gaussian_spec", "set_ppca_params"]


def linear_gaussian_spec(data_dim: int, latent_dim: int) -> Any:
    """The ``linear_gaussian`` zoo spec resized to ``data_dim`` and ``latent_dim``."""
    return load_spec("linear_gaussian").replace(data_shape=(data_dim,), latent_dim=latent_dim)


def set_ppca_params(vae: Any, W: Any, b: Any, sigma: float, exact_posterior: bool = True) -> None:
    r"""Set a linear-Gaussian VAE's decoder to PPCA(W, b, σ), and its encoder to p(z | x).

    The decoder gets ``decoder.0.weight = W``, ``decoder.0.bias = b`` and the likelihood
    scale σ (``likelihood.scale_raw = softplus⁻¹(σ − min_scale)``; a fixed-scale spec must
    already have scale σ). With ``exact_posterior`` the encoder outputs the exact
    posterior: mean half ``M⁻¹Wᵀ(x − b)``, scale half with zero weights and bias
    ``softplus⁻¹(σ_post − scale_floor)``, σ_post² = σ² / diag(M). That needs orthogonal
    columns of ``W`` (diagonal M); :func:`ppl_vae.data.ppca.orthogonal_ppca` draws such
    parameters.

    The VAE must have a linear encoder and decoder, a Gaussian posterior, a standard
    normal prior and a Gaussian likelihood (the ``linear_gaussian`` zoo model, e.g.
    :func:`linear_gaussian_spec`), on either backend.
    """
    spec = vae.spec
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    data_dim, latent_dim = spec.data_dim, spec.latent_dim
    _check_linear_gaussian(spec)
    if W.shape != (data_dim, latent_dim) or b.shape != (data_dim,):
        raise ValueError(f"W must have shape ({data_dim}, {latent_dim}) and b ({data_dim},) for "
                         f"this model; got {W.shape} and {b.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    params = vae.get_params()
    params["decoder.0.weight"] = W
    params["decoder.0.bias"] = b
    lik = spec.likelihood
    if lik.learned:
        if not sigma > lik.min_scale:
            raise ValueError(f"sigma = {sigma} must exceed the likelihood's min_scale "
                             f"{lik.min_scale}")
        params["likelihood.scale_raw"] = inverse_softplus(sigma - lik.min_scale)
    elif not np.isclose(float(lik.scale), sigma, rtol=1e-12, atol=0.0):
        raise ValueError(f"the spec fixes the likelihood scale at {lik.scale}, but sigma = "
                         f"{sigma}; use scale = 'learned' or pass sigma = {lik.scale}")
    if exact_posterior:
        gram = W.T @ W
        off_diagonal = gram - np.diag(np.diag(gram))
        if np.abs(off_diagonal).max(initial=0.0) > 1e-10 * max(np.abs(gram).max(), 1.0):
            raise ValueError("the exact posterior is a diagonal Gaussian only when W has "
                             "orthogonal columns (W^T W diagonal); draw W with "
                             "ppl_vae.data.ppca.orthogonal_ppca(...) or pass "
                             "exact_posterior=False")
        m_diag = np.diag(gram) + sigma**2
        post_scale = sigma / np.sqrt(m_diag)
        if np.any(post_scale <= spec.scale_floor):
            raise ValueError(f"posterior scales {post_scale.min():g} fall below the spec's "
                             f"scale_floor {spec.scale_floor}; increase sigma")
        gain = W.T / m_diag[:, None]
        params["encoder.0.weight"] = np.concatenate([gain, np.zeros_like(gain)])
        params["encoder.0.bias"] = np.concatenate(
            [-gain @ b, inverse_softplus(post_scale - spec.scale_floor)])
    vae.set_params(params)


def _check_linear_gaussian(spec: Any) -> None:
    problems = []
    if not isinstance(spec.posterior, GaussianPosterior):
        problems.append(f"posterior {spec.posterior.name!r} (need 'gaussian')")
    if not isinstance(spec.prior, StandardNormal):
        problems.append(f"prior {spec.prior.name!r} (need 'standard-normal')")
    if not isinstance(spec.likelihood, Gaussian):
        problems.append(f"likelihood {spec.likelihood.name!r} (need 'gaussian')")
    if spec.encoder is None or spec.encoder.hidden:
        problems.append("encoder is not linear (need hidden = [])")
    if spec.decoder.hidden:
        problems.append("decoder is not linear (need hidden = [])")
    if problems:
        raise ValueError(f"spec {spec.name!r} is not a linear-Gaussian VAE: "
                         f"{'; '.join(problems)}; build the 'linear_gaussian' zoo model "
                         "(linear_gaussian_spec(data_dim, latent_dim))")
