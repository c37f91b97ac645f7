"""PSIS k̂ of the guide's importance weights: sign convention, thresholds, linear-Gaussian truths."""

import numpy as np
import pytest
import scipy.stats as st

from ppl_vae import diagnostics
from ppl_vae.data.ppca import exact_log_likelihood, inverse_softplus, orthogonal_ppca
from ppl_vae.models import build
from ppl_vae.models.linear_gaussian import linear_gaussian_spec, set_ppca_params

DATA_DIM, LATENT_DIM, B = 6, 2, 5


def ppca_vae(backend, scale_factor=1.0, num_points=B):
    """Linear-Gaussian VAE whose encoder is the exact posterior, its scales times a factor."""
    ppca = orthogonal_ppca(DATA_DIM, LATENT_DIM, noise_scale=0.5, seed=0)
    vae = build(linear_gaussian_spec(DATA_DIM, LATENT_DIM), backend)
    set_ppca_params(vae, ppca.W, ppca.b, ppca.sigma)
    if scale_factor != 1.0:
        params = vae.get_params()
        floor = vae.spec.scale_floor
        bias = params["encoder.0.bias"].astype(np.float64)
        scale = np.logaddexp(0.0, bias[LATENT_DIM:]) + floor  # softplus + floor
        bias[LATENT_DIM:] = inverse_softplus(scale_factor * scale - floor)
        params["encoder.0.bias"] = bias
        vae.set_params(params)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(num_points, LATENT_DIM)) @ ppca.W.T + ppca.b
         + ppca.sigma * rng.normal(size=(num_points, DATA_DIM))).astype(np.float32)
    return vae, x, ppca


def test_psislw_takes_log_ratios_not_their_negation():
    # Target N(0, 1.2²), proposal N(0, 1): w ∝ exp(z²(1 − 1/1.44)/2), whose tail index is
    # k = 1 − 1/1.44 = 0.306. 20 independent replicates of S = 10⁴ draws; the tolerance is
    # 4 standard errors of their mean, from the replicates' own spread.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(10_000, 20))
    log_w = st.norm(0, 1.2).logpdf(z) - st.norm(0, 1).logpdf(z)
    khat = diagnostics.psis(log_w).khat
    se = khat.std(ddof=1) / np.sqrt(khat.size)
    assert abs(khat.mean() - (1 - 1 / 1.44)) < 4 * se
    # The negated input has bounded weights (k < 0): what a flipped sign would report.
    assert diagnostics.psis(-log_w).khat.max() < 0


def test_psis_smoothed_weights_are_normalized():
    rng = np.random.default_rng(1)
    result = diagnostics.psis(rng.standard_t(3, size=(500, 4)))
    np.testing.assert_allclose(np.exp(result.log_weights).sum(axis=0), 1.0, rtol=1e-10)
    assert result.log_weights.shape == (500, 4)


def test_constant_log_weights_give_minus_inf_not_arviz_inf():
    # ArviZ fits its GPD to a constant tail and returns +inf: exactly the wrong verdict.
    result = diagnostics.psis(np.full((100, 2), -3.0))
    assert np.all(result.khat == -np.inf)
    np.testing.assert_allclose(np.exp(result.log_weights), 1 / 100, rtol=1e-12)


def test_psis_rejects_non_finite_weights():
    log_w = np.zeros((10, 2))
    log_w[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        diagnostics.psis(log_w)


def test_thresholds_and_bands():
    # min(1 − 1/log10 S, 0.7): 0.5 at S = 100, 2/3 at S = 1000, capped at 0.7.
    assert diagnostics.khat_threshold(100) == pytest.approx(0.5, rel=1e-12)
    assert diagnostics.khat_threshold(1000) == pytest.approx(2 / 3, rel=1e-12)
    assert diagnostics.khat_threshold(10**5) == 0.7
    khat = np.array([-np.inf, 0.2, 0.5, 0.7, 0.71, 1.3])
    assert list(diagnostics.khat_bands(khat)) == ["good", "good", "ok", "ok", "unreliable",
                                                  "unreliable"]
    summary = diagnostics.khat_summary(khat, 1000).set_index("band")
    assert summary.loc["good", "count"] == 2 and summary.loc["unreliable", "count"] == 2
    assert summary.loc["ok", "fraction"] == pytest.approx(2 / 6, rel=1e-12)
    assert summary["count"].iloc[3] == 3  # 0.7, 0.71, 1.3 are >= 2/3


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_exact_posterior_guide_has_constant_weights_equal_to_log_px(backend):
    # With q = p(z | x), log p(x, z) − log q(z | x) = log p(x) for every z: float32
    # rounding of terms of size ~10 allows ~1e-5 absolute.
    vae, x, ppca = ppca_vae(backend)
    weights = diagnostics.importance_weights(vae, x, 500, seed=0)
    exact = exact_log_likelihood(ppca.W, ppca.b, ppca.sigma, x)
    np.testing.assert_allclose(weights.log_weight, np.broadcast_to(exact, (500, B)), atol=1e-4)
    assert np.all(np.ptp(weights.log_weight, axis=0) <= weights.resolution)
    assert weights.draws["z"].shape == (500, B, LATENT_DIM)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_khat_near_the_exact_posterior_is_the_known_tail_index(backend):
    # Guides slightly off the posterior, so the log weights are not constant (their range is
    # ~1000× the resolution rule's threshold) and k̂ is a real fit. Per latent dimension the
    # guide is N(μ, (sσ)²): the weights' tail index is k = 1 − s². s = 0.8: k = 0.36; the
    # mean k̂ over 20 datapoints (S = 4000) must lie within 4 of its standard errors
    # (≈ 0.016, so 0 and 2k = 0.72 are both excluded). s = 1.1: k < 0, every k̂ good.
    vae, x, _ = ppca_vae(backend, scale_factor=0.8, num_points=20)
    narrow = diagnostics.importance_weights(vae, x, 4000, seed=1)
    assert np.all(np.ptp(narrow.log_weight, axis=0) > 100 * narrow.resolution)
    khat = diagnostics.psis(narrow.log_weight, resolution=narrow.resolution).khat
    se = khat.std(ddof=1) / np.sqrt(khat.size)
    assert abs(khat.mean() - 0.36) < 4 * se and 4 * se < 0.18, (khat.mean(), se)
    vae, x, _ = ppca_vae(backend, scale_factor=1.1, num_points=20)
    wide = diagnostics.importance_weights(vae, x, 4000, seed=1)
    assert np.all(np.ptp(wide.log_weight, axis=0) > 100 * wide.resolution)
    assert np.all(diagnostics.psis(wide.log_weight, resolution=wide.resolution).khat
                  < diagnostics.KHAT_GOOD)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_khat_good_for_wide_guide_and_unreliable_for_narrow_guide(backend):
    # Per latent dimension the guide is N(μ, (sσ)²) against the posterior N(μ, σ²); with
    # d = 2 the weights' tail index is exactly k = 1 − s². s = 1.3: k < 0 (bounded
    # weights); simulated k̂ at S = 4000 has mean −0.91, sd 0.07, so < 0.5 holds with room.
    vae, x, _ = ppca_vae(backend, scale_factor=1.3)
    wide = diagnostics.importance_weights(vae, x, 4000, seed=1)
    assert np.all(diagnostics.psis(wide.log_weight, resolution=wide.resolution).khat < 0.5)
    # s = 0.2: k = 0.96, but one k̂ at S = 4000 has sd ≈ 0.13 (a 190-draw tail), so the
    # claim is tested on the mean over 20 datapoints: > 0.7 by 4 of its standard errors.
    vae, x, _ = ppca_vae(backend, scale_factor=0.2, num_points=20)
    narrow = diagnostics.importance_weights(vae, x, 4000, seed=1)
    khat = diagnostics.psis(narrow.log_weight, resolution=narrow.resolution).khat
    assert khat.mean() - 4 * khat.std(ddof=1) / np.sqrt(khat.size) > diagnostics.KHAT_OK
    summary = diagnostics.khat_summary(khat, 4000).set_index("band")
    assert summary.loc["unreliable", "fraction"] > 0.5 and summary.loc["good", "count"] == 0


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_chunked_weights_keep_draws_and_terms_aligned(backend):
    # Chunks of one datapoint each: the returned terms must be those of the returned draws
    # for the right rows of x (float32 recomputation, jitted vs eager: a few ulps of terms
    # of size ~10, hence atol 1e-5).
    vae, x, _ = ppca_vae(backend, scale_factor=0.7)
    weights = diagnostics.importance_weights(vae, x, 50, seed=3, budget=50)
    assert weights.log_q.shape == (50, B)
    terms = vae.log_prob_terms(vae.as_tensor(x), {"z": vae.as_tensor(weights.draws["z"])})
    for name, value in weights.terms().items():
        computed = terms[name].detach() if backend == "pyro" else terms[name]
        np.testing.assert_allclose(value, np.asarray(computed), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_khat_sees_the_draws_behind_the_log_likelihood_estimate(backend):
    # One importance sampler: for the same seed, K and budget, diagnose's weights are those
    # behind evaluate's log p(x). The two sum the same float32 terms (~10 in size) on the
    # device and in float64 on the host: a few ulps, hence atol 1e-4; another seed moves
    # the weights by O(1), far outside it.
    from ppl_vae.evaluation import importance_sample

    vae, x, _ = ppca_vae(backend, scale_factor=0.7)
    weights = diagnostics.importance_weights(vae, x, 64, seed=5)
    estimate = importance_sample(vae, x, 64, seed=5, return_log_weights=True)
    np.testing.assert_allclose(weights.log_weight, estimate.log_weights, rtol=0, atol=1e-4)
    other = importance_sample(vae, x, 64, seed=6, return_log_weights=True)
    assert np.abs(other.log_weights - estimate.log_weights).max() > 0.1


def test_collapse_flags_the_dimension_the_decoder_ignores():
    # PPCA with a zero column in W: that latent has posterior = prior N(0, 1) for every x
    # (KL 0, mean 0: inactive, collapsed). The others have closed-form KLs
    # ½(s² + m² − 1 − log s²) averaged over x, and activity Var_x(m) (float32: rtol 1e-5).
    from ppl_vae.data.ppca import exact_posterior

    ppca = orthogonal_ppca(DATA_DIM, 3, noise_scale=0.5, seed=0)
    W = ppca.W.copy()
    W[:, 1] = 0.0
    vae = build(linear_gaussian_spec(DATA_DIM, 3), "numpyro")
    set_ppca_params(vae, W, ppca.b, ppca.sigma)
    x = (np.random.default_rng(2).normal(size=(40, 3)) @ W.T + ppca.b
         + ppca.sigma * np.random.default_rng(3).normal(size=(40, DATA_DIM))).astype(np.float32)
    table = diagnostics.posterior_collapse(vae, x)
    mean, cov = exact_posterior(W, ppca.b, ppca.sigma, x)
    var = np.diag(cov)
    kl = 0.5 * (var + mean**2 - 1 - np.log(var)).mean(axis=0)
    np.testing.assert_allclose(table["kl"], kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["activity"], mean.var(axis=0), rtol=1e-5, atol=1e-9)
    assert list(table["collapsed"]) == [False, True, False]
    assert list(table["active"]) == [True, False, True]
