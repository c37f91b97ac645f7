"""Inference gaps (Cremer et al. 2018) against linear-Gaussian closed forms."""

import numpy as np
import pytest

from ppl_vae.data.ppca import exact_log_likelihood, orthogonal_ppca
from ppl_vae.diagnostics.gaps import inference_gaps
from ppl_vae.models import build, load_spec
from ppl_vae.models.linear_gaussian import linear_gaussian_spec, set_ppca_params

DATA_DIM, LATENT_DIM, B = 6, 2, 4


def data(W, b, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, W.shape[1])) @ W.T + b
            + sigma * rng.normal(size=(B, W.shape[0]))).astype(np.float32)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_gaps_vanish_for_the_exact_posterior_guide(backend):
    # q = p(z | x): every log weight equals log p(x), so ELBO = log p(x) with zero variance
    # and the STL gradient is exactly zero. Float32 terms of size ~10 round at ~1e-6.
    ppca = orthogonal_ppca(DATA_DIM, LATENT_DIM, noise_scale=0.5, seed=0)
    vae = build(linear_gaussian_spec(DATA_DIM, LATENT_DIM), backend)
    set_ppca_params(vae, ppca.W, ppca.b, ppca.sigma)
    x = data(ppca.W, ppca.b, ppca.sigma)
    log_px = exact_log_likelihood(ppca.W, ppca.b, ppca.sigma, x)
    table = inference_gaps(vae, x, log_px=log_px, num_eval_samples=200).table
    np.testing.assert_allclose(table["elbo_amortized"], log_px, atol=1e-5)
    np.testing.assert_allclose(table["gap_amortization"], 0.0, atol=1e-5)
    np.testing.assert_allclose(table["gap_approximation"], 0.0, atol=1e-5)


@pytest.fixture(scope="module")
def correlated():
    """Correlated PPCA posterior (mean-field q cannot be exact) and a random linear encoder."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(DATA_DIM, LATENT_DIM))
    W[:, 1] = W[:, 0] + 0.5 * W[:, 1]
    b, sigma = rng.normal(size=DATA_DIM), 0.8
    vae = build(linear_gaussian_spec(DATA_DIM, LATENT_DIM), "numpyro", seed=3)
    set_ppca_params(vae, W, b, sigma, exact_posterior=False)
    x = data(W, b, sigma)
    return W, b, sigma, vae, x


def test_approximation_gap_is_the_mean_field_kl(correlated):
    # For a Gaussian posterior with precision Λ the best diagonal Gaussian has
    # KL = ½ (Σ log Λ_ii − log det Λ); here Λ = (WᵀW + σ² I) / σ² for every x.
    W, b, sigma, vae, x = correlated
    log_px = exact_log_likelihood(W, b, sigma, x)
    result = inference_gaps(vae, x, log_px=log_px, num_steps=2000, learning_rate=0.05,
                            num_eval_samples=10_000, seed=0)
    t = result.table
    precision = (W.T @ W + sigma**2 * np.eye(LATENT_DIM)) / sigma**2
    kl = 0.5 * (np.log(np.diag(precision)).sum() - np.linalg.slogdet(precision)[1])
    assert kl > 0.3  # a gap clearly above the Monte Carlo error
    # 4 standard errors of the optimized ELBO (exact log p(x): its se is the gap's se).
    assert np.all(np.abs(t["gap_approximation"] - kl) < 4 * t["gap_approximation_se"])
    # A random encoder is far from the per-datapoint optimum: positive amortization gap.
    assert np.all(t["gap_amortization"] > 4 * t["gap_amortization_se"])
    assert t["improved"].all()
    # The decomposition is an identity of the reported numbers.
    np.testing.assert_allclose(t["gap_amortization"] + t["gap_approximation"],
                               t["log_px"] - t["elbo_amortized"], rtol=1e-12)
    assert result.trace[-1] > result.trace[0]


def test_gaps_with_estimated_log_px_are_nonnegative(correlated):
    # log p(x) by importance sampling (the better of the amortized and the optimized q as
    # proposal): both gaps ≥ 0 up to 4 standard errors.
    _, _, _, vae, x = correlated
    t = inference_gaps(vae, x, num_steps=200, learning_rate=0.05, num_eval_samples=2000,
                       num_likelihood_samples=2000, seed=1).table
    assert set(t["log_px_source"]) <= {"iwae-optimized-q", "iwae-amortized-q"}
    assert np.all(t["gap_amortization"] > -4 * t["gap_amortization_se"])
    assert np.all(t["gap_approximation"] > -4 * t["gap_approximation_se"])


def test_encoder_free_and_discrete_models_are_refused():
    vae = build(load_spec("latent_laplace").replace(data_shape=(4,), latent_dim=2), "numpyro",
                num_data=3)
    with pytest.raises(ValueError, match="no amortization gap"):
        inference_gaps(vae, np.zeros((3, 4), np.float32))
    vae = build(load_spec("masked_laplace").replace(data_shape=(4,), latent_dim=2), "numpyro")
    with pytest.raises(ValueError, match="relaxed"):
        inference_gaps(vae, np.zeros((3, 4), np.float32))
