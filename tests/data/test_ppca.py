"""Tests for :mod:`ppl_vae.data.ppca`: PPCA weights, exact posterior, exact guide."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from ppl_vae.data import ppca as lg
from ppl_vae.models import build, linear_gaussian, load_spec


def _log_weights(vae, x, num_samples):
    draws = vae.sample_latents(x, num_samples)
    terms = vae.log_prob_terms(vae.as_tensor(x), draws)
    log_w = terms["log_likelihood"] + terms["log_prior"] - terms["log_q"]
    return np.asarray(log_w.detach() if hasattr(log_w, "detach") else log_w)


def test_orthogonal_ppca_has_orthogonal_columns_of_unequal_length():
    params = lg.orthogonal_ppca(12, 4, noise_scale=0.3, seed=2)
    gram = params.W.T @ params.W
    # Exact identity up to QR round-off.
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-12)
    assert np.unique(np.round(np.diag(gram), 6)).size == 4
    assert params.b.shape == (12,) and params.sigma == 0.3


def test_exact_posterior_matches_gaussian_conditioning_for_any_w():
    # Condition the joint Gaussian of (z, x) directly (Schur complement) for a W with
    # correlated columns: mean = Wᵀ Σₓ⁻¹ (x − b), cov = I − Wᵀ Σₓ⁻¹ W. Same math, other route.
    rng = np.random.default_rng(0)
    W, b, sigma = rng.normal(size=(7, 3)), rng.normal(size=7), 0.4
    x = rng.normal(size=(5, 7))
    sigma_x = W @ W.T + sigma**2 * np.eye(7)
    mean, cov = lg.exact_posterior(W, b, sigma, x)
    np.testing.assert_allclose(mean, np.linalg.solve(sigma_x, (x - b).T).T @ W, rtol=1e-10)
    np.testing.assert_allclose(cov, np.eye(3) - W.T @ np.linalg.solve(sigma_x, W), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_exact_guide_makes_every_importance_weight_the_marginal_likelihood(backend):
    # With q = p(z | x), log p(x, z) − log q(z | x) = log p(x) for every z: exact identity.
    params = lg.orthogonal_ppca(9, 3, noise_scale=0.5, seed=1)
    x = np.random.default_rng(1).normal(size=(6, 9)) * 2 + params.b
    with jax.enable_x64(True):
        vae = build(linear_gaussian.linear_gaussian_spec(9, 3), backend, dtype="float64")
        linear_gaussian.set_ppca_params(vae, params.W, params.b, params.sigma)
        log_w = _log_weights(vae, x, 20)
        mean, cov = lg.exact_posterior(params.W, params.b, params.sigma, x)
        np.testing.assert_allclose(np.asarray(vae.encode(x)), mean, rtol=1e-10, atol=1e-12)
    exact = lg.exact_log_likelihood(params.W, params.b, params.sigma, x)
    np.testing.assert_allclose(log_w, np.broadcast_to(exact, log_w.shape), rtol=1e-12)


def test_set_ppca_params_without_exact_posterior_keeps_the_encoder():
    params = lg.orthogonal_ppca(5, 2, seed=0)
    vae = build(linear_gaussian.linear_gaussian_spec(5, 2), "pyro", dtype="float64")
    before = vae.get_params()
    linear_gaussian.set_ppca_params(vae, params.W, params.b, params.sigma, exact_posterior=False)
    after = vae.get_params()
    np.testing.assert_array_equal(after["encoder.0.weight"], before["encoder.0.weight"])
    np.testing.assert_allclose(after["decoder.0.weight"], params.W, rtol=1e-15)


def test_set_ppca_params_refuses_what_it_cannot_represent():
    vae = build(linear_gaussian.linear_gaussian_spec(5, 2), "pyro")
    W = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="orthogonal columns"):
        linear_gaussian.set_ppca_params(vae, W, np.zeros(5), 0.5)
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        linear_gaussian.set_ppca_params(vae, W.T, np.zeros(5), 0.5)
    deep = build(load_spec("gaussian_gaussian").replace(data_shape=(5,), latent_dim=2), "pyro")
    with pytest.raises(ValueError, match="not a linear-Gaussian VAE"):
        linear_gaussian.set_ppca_params(deep, W, np.zeros(5), 0.5)
    with pytest.raises(ValueError, match="positive"):
        lg.inverse_softplus(0.0)


def test_ppca_log_likelihood_matches_scipy():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(6, 3))
    b = rng.normal(size=6)
    sigma = 0.7
    x = rng.normal(size=(40, 6)) * 2
    expected = multivariate_normal(mean=b, cov=W @ W.T + sigma**2 * np.eye(6)).logpdf(x)
    got = lg.exact_log_likelihood(W, b, sigma, x)
    assert got.shape == (40,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(lg.exact_log_likelihood(W, b, sigma, x[0]), expected[0])


def test_ppca_synthetic_samples_the_model():
    raw, params = lg.ppca_synthetic(num_data=20000, data_dim=5, latent_dim=2, seed=1)
    assert raw.values.shape == (20000, 5) and raw.values.dtype == np.float32
    assert raw.max_value is None  # continuous: never rescaled to [0, 1]
    assert params.W.shape == (5, 2) and params.b.shape == (5,) and params.sigma == 0.1
    cov = params.W @ params.W.T + params.sigma**2 * np.eye(5)
    np.testing.assert_allclose(np.cov(raw.values.T), cov, atol=0.1 * np.abs(cov).max())
    again, _ = lg.ppca_synthetic(num_data=20000, data_dim=5, latent_dim=2, seed=1)
    np.testing.assert_array_equal(raw.values, again.values)
