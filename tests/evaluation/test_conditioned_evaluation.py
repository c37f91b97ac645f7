"""IS log p(x | c) of a conditional VAE against its closed form, and the evaluation table.

A linear-Gaussian cVAE: p(z | c) = N(μ_c, σ² I), x = W z + V e_c + b + s ε. Then
p(x | c) = N(x; W μ_c + V e_c + b, σ² W Wᵀ + s² I), and with orthogonal columns of W the
posterior p(z | x, c) is diagonal Gaussian with a mean linear in [x, e_c]: the encoder can
hold it exactly, every importance weight equals p(x | c), and the estimate is exact.
"""

import jax
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import ppl_vae.models
from ppl_vae.data.ppca import inverse_softplus
from ppl_vae.evaluation import evaluate_split, importance_sample
from ppl_vae.families import LearnedNormal
from ppl_vae.spec import ConditionSpec

D, LATENT, C, N = 5, 2, 3, 7
SIGMA, S = 0.8, 0.5


def exact_cvae(backend):
    spec = ppl_vae.models.load_spec("linear_gaussian").replace(
        data_shape=(D,), latent_dim=LATENT, prior=LearnedNormal(),
        condition=ConditionSpec(C, "learned"))
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, LATENT)))
    W = q * np.array([1.5, 0.7])
    V, b, mu = rng.normal(size=(D, C)), rng.normal(size=D), rng.normal(size=(C, LATENT))
    var = 1.0 / (1.0 / SIGMA**2 + (W**2).sum(axis=0) / S**2)  # posterior variance, any c
    gain = var[:, None] * W.T / S**2                          # E[z | x, c] = gain (x - V e_c - b)
    class_part = var[:, None] * mu.T / SIGMA**2 - gain @ V    # ... + var μ_c / σ²
    floor, min_scale = spec.scale_floor, spec.likelihood.min_scale
    params = {
        "encoder.0.weight": np.block([[gain, class_part], [np.zeros((LATENT, D + C))]]),
        "encoder.0.bias": np.concatenate([-gain @ b, inverse_softplus(np.sqrt(var) - floor)]),
        "decoder.0.weight": np.concatenate([W, V], axis=1), "decoder.0.bias": b,
        "prior.loc": mu, "prior.scale_raw": np.full((C, LATENT),
                                                     inverse_softplus(SIGMA - floor)),
        "likelihood.scale_raw": np.array(inverse_softplus(S - min_scale)),
    }
    vae = ppl_vae.models.build(spec, backend, dtype="float64")
    vae.set_params(params)
    x = rng.normal(size=(N, D)) * 2
    c = rng.integers(0, C, N)

    def log_p(labels):
        return np.array([multivariate_normal.logpdf(
            x[n], W @ mu[k] + V[:, k] + b, SIGMA**2 * W @ W.T + S**2 * np.eye(D))
            for n, k in enumerate(labels)])

    return vae, x, c, log_p


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_importance_sampled_log_p_x_given_c_is_the_closed_form(backend):
    with jax.enable_x64(True):
        vae, x, c, log_p = exact_cvae(backend)
        est = importance_sample(vae, x, 16, seed=0, c=c)
        wrong = importance_sample(vae, x, 16, seed=0, c=(c + 1) % C)
    np.testing.assert_allclose(est.log_likelihood, log_p(c), rtol=1e-9)
    np.testing.assert_allclose(est.ess, 16, rtol=1e-9)  # equal weights: q is the posterior
    np.testing.assert_allclose(wrong.log_likelihood, log_p((c + 1) % C), rtol=1e-6)
    assert np.min(np.abs(log_p(c) - log_p((c + 1) % C))) > 0.1


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_evaluation_table_of_a_conditioned_model_uses_the_labels(backend):
    with jax.enable_x64(True):
        vae, x, c, log_p = exact_cvae(backend)
        table, notes = evaluate_split(vae, x, c=c)
        with pytest.raises(ValueError, match=r"pass c= \(the labels"):
            evaluate_split(vae, x)
    values = table.set_index("metric")["value"]
    np.testing.assert_allclose(values["log_likelihood_is"], log_p(c).mean(), rtol=1e-9)
    assert values["active_units"] == LATENT and np.isfinite(values["reconstruction_mse"])
    assert np.isfinite(values["kl_dim_0"]) and values["kl"] > 0
    assert any("log p(x | c)" in note for note in notes)
