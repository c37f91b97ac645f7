"""Linear-Gaussian VAE = probabilistic PCA: with the guide set to the exact posterior,
log p(x, z) − log q(z | x) = log p(x) for EVERY draw z (the importance weight is constant)."""

import jax
import numpy as np
import pytest

import ppl_vae.models
from ppl_vae.data.ppca import exact_log_likelihood, orthogonal_ppca
from ppl_vae.models.linear_gaussian import linear_gaussian_spec, set_ppca_params


def npy(value):
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_log_weight_equals_ppca_closed_form_for_every_draw(backend):
    with jax.enable_x64(True):
        ppca = orthogonal_ppca(data_dim=7, latent_dim=3, noise_scale=0.6, seed=4)
        vae = ppl_vae.models.build(linear_gaussian_spec(7, 3), backend, dtype="float64")
        set_ppca_params(vae, ppca.W, ppca.b, ppca.sigma)
        rng = np.random.default_rng(1)
        x = ppca.b + rng.normal(size=(5, 3)) @ ppca.W.T + ppca.sigma * rng.normal(size=(5, 7))
        latents = vae.sample_latents(x, 200)
        t = vae.log_prob_terms(vae.as_tensor(x), latents)
        log_w = npy(t["log_likelihood"] + t["log_prior"] - t["log_q"])
        exact = exact_log_likelihood(ppca.W, ppca.b, ppca.sigma, x)
        assert log_w.shape == (200, 5)
        np.testing.assert_allclose(log_w, np.broadcast_to(exact, log_w.shape), rtol=1e-9)
        # The analytic-KL ELBO is then tight too: E_q log p(x|z) − KL = log p(x), up to the
        # Monte Carlo error of the 200-draw mean (5 standard errors).
        log_lik = npy(t["log_likelihood"])
        kl = npy(vae.kl(vae.as_tensor(x)))
        tolerance = 5 * float(log_lik.std(0).max()) / np.sqrt(200)
        np.testing.assert_allclose(log_lik.mean(0) - kl, exact, atol=tolerance)
