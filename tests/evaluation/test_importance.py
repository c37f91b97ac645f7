"""Tests for :mod:`ppl_vae.evaluation.importance`: importance-sampled log p(x), the ELBO, units,
chunking, backend parity and the ``ppl-vae evaluate`` command."""

from __future__ import annotations

import math

import jax
import numpy as np
import pandas as pd
import pytest

from ppl_vae.cli import main
from ppl_vae.data import dequantization_offset_nats
from ppl_vae.data import ppca as lg
from ppl_vae.data.ppca import PPCAParams
from ppl_vae.evaluation import (
    bits_per_dim,
    elbo,
    importance_sample,
    likelihood_units,
    log_likelihood,
    log_mean_exp,
    plan_chunks,
)
from ppl_vae.families import Gaussian
from ppl_vae.models import build, linear_gaussian, load_spec
from ppl_vae.runs import create_run
from ppl_vae.spec import NetworkSpec


def _ppca_vae(backend, params, *, shift=0.0, inflate=1.0):
    """Linear-Gaussian VAE with PPCA decoder and the exact posterior, its mean shifted by
    ``shift`` posterior standard deviations and its scales multiplied by ``inflate``."""
    data_dim, latent_dim = params.W.shape
    vae = build(linear_gaussian.linear_gaussian_spec(data_dim, latent_dim), backend,
                dtype="float64")
    linear_gaussian.set_ppca_params(vae, params.W, params.b, params.sigma)
    post_sd = np.sqrt(np.diag(lg.exact_posterior(params.W, params.b, params.sigma,
                                                 params.b)[1]))
    raw = vae.get_params()
    bias = np.array(raw["encoder.0.bias"])
    bias[:latent_dim] += shift * post_sd
    bias[latent_dim:] = lg.inverse_softplus(inflate * post_sd - vae.spec.scale_floor)
    vae.set_params(raw | {"encoder.0.bias": bias})
    return vae, shift**2 * latent_dim


def _ppca_data(params, num, seed):
    rng = np.random.default_rng(seed)
    data_dim, latent_dim = params.W.shape
    return (rng.normal(size=(num, latent_dim)) @ params.W.T + params.b
            + params.sigma * rng.normal(size=(num, data_dim)))


PPCA = lg.orthogonal_ppca(10, 3, noise_scale=0.5, seed=4)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_exact_guide_gives_the_closed_form_for_every_k(backend):
    x = _ppca_data(PPCA, 7, seed=0)
    exact = lg.exact_log_likelihood(PPCA.W, PPCA.b, PPCA.sigma, x)
    with jax.enable_x64(True):
        vae, _ = _ppca_vae(backend, PPCA)
        for k in (1, 300):
            est = importance_sample(vae, x, k, seed=k, budget=64, return_log_weights=True)
            assert est.log_weights.shape == (k, 7)
            np.testing.assert_allclose(est.log_weights, np.broadcast_to(exact, (k, 7)),
                                       rtol=1e-10)
            # Every weight equals p(x): an exact identity, float64 round-off only.
            np.testing.assert_allclose(est.log_likelihood, exact, rtol=1e-10)
            np.testing.assert_allclose(est.ess, k, rtol=1e-10)
        np.testing.assert_allclose(log_likelihood(vae, x, 300, seed=0, budget=64), exact,
                                   rtol=1e-10)


def test_is_estimate_converges_to_ppca_closed_form_within_its_standard_error():
    # Arbitrary (non-orthogonal) decoder weights; the guide is mean-field with the exact
    # posterior mean and marginal scales inflated 1.5× (a proposal wider than the posterior,
    # so the weights are bounded and the delta-method standard error is trustworthy).
    raw_w = np.random.default_rng(7).normal(size=(10, 3))
    b, sigma = np.linspace(-1, 1, 10), 0.5
    vae = build(linear_gaussian.linear_gaussian_spec(10, 3), "pyro", dtype="float64")
    linear_gaussian.set_ppca_params(vae, raw_w, b, sigma, exact_posterior=False)
    gain = np.linalg.solve(raw_w.T @ raw_w + sigma**2 * np.eye(3), raw_w.T)
    _, cov = lg.exact_posterior(raw_w, b, sigma, b)
    scale = lg.inverse_softplus(1.5 * np.sqrt(np.diag(cov)) - vae.spec.scale_floor)
    vae.set_params(vae.get_params() | {
        "encoder.0.weight": np.concatenate([gain, np.zeros_like(gain)]),
        "encoder.0.bias": np.concatenate([-gain @ b, scale])})
    x = _ppca_data(PPCAParams(raw_w, b, sigma), 48, seed=1)
    exact = lg.exact_log_likelihood(raw_w, b, sigma, x)
    est = importance_sample(vae, x, 3000, seed=0)
    z = (est.log_likelihood - exact) / est.stderr
    # Per datapoint within 4 se (two-sided p ≈ 6e-5 each), and the se calibrated: the RMS
    # z-score of 48 points would have sd 1/sqrt(96) ≈ 0.10 around 1 for Gaussian errors; the
    # delta-method z is heavier-tailed (sd 0.19 over seeds 0-5), so [0.5, 1.6] is ±3 of that
    # and still fails an se off by a factor of two.
    assert np.all(np.abs(z) < 4.0)
    assert 0.5 < np.sqrt(np.mean(z**2)) < 1.6
    assert est.log_likelihood.dtype == np.float64 and est.ess.min() > 600


def test_is_estimate_is_above_the_elbo_and_increases_with_k():
    # Guide = exact posterior shifted by 0.8 sd per dimension: log w = log p(x) − δ·ε − |δ|²/2
    # with |δ|² = 1.92, so the ELBO gap is |δ|²/2 = 0.96 nats exactly and the IWAE bias
    # ≈ (e^{|δ|²} − 1)/(2K): 0.29 nats at K = 10, 0.03 at K = 100.
    vae, delta2 = _ppca_vae("pyro", PPCA, shift=0.8)
    x = _ppca_data(PPCA, 512, seed=2)
    exact = lg.exact_log_likelihood(PPCA.W, PPCA.b, PPCA.sigma, x)
    gaps = {k: importance_sample(vae, x, k, seed=k).log_likelihood - exact
            for k in (1, 10, 100)}
    elbo_gap = elbo(vae, x, 1000, seed=3)[0] - exact

    def sem(a):
        return a.std(ddof=1) / math.sqrt(a.size)

    # The analytic-KL ELBO matches the closed-form gap within 4 se of its mean over data.
    assert abs(elbo_gap.mean() + delta2 / 2) < 4 * sem(elbo_gap)
    # Each step up in K raises the mean estimate by more than 3 se of the difference.
    for lower, higher in ((elbo_gap, gaps[1]), (gaps[1], gaps[10]), (gaps[10], gaps[100])):
        diff = higher - lower
        if lower is elbo_gap:  # K = 1 is the ELBO in expectation: only require ≥ (within 3 se)
            assert diff.mean() > -3 * sem(diff)
        else:
            assert diff.mean() > 3 * sem(diff)
    assert gaps[10].mean() > elbo_gap.mean() + 3 * sem(gaps[10] - elbo_gap)
    assert gaps[100].mean() < 0.1  # a lower bound in expectation: not above log p(x)


# --------------------------------------------------------------------------- parity, chunks


SMALL = load_spec("laplace_laplace").replace(data_shape=(12,), latent_dim=3,
                                              encoder=NetworkSpec(hidden=(8,)),
                                              decoder=NetworkSpec(hidden=(8,)))
MASKED = load_spec("masked_relaxed_laplace").replace(data_shape=(12,), latent_dim=3,
                                                     encoder=NetworkSpec(hidden=(8,)),
                                                     decoder=NetworkSpec(hidden=(8,)))


@pytest.mark.parametrize("spec", [SMALL, MASKED], ids=["laplace", "masked-relaxed"])
def test_both_backends_give_the_same_estimate_on_the_same_weights_and_draws(spec):
    x = (np.random.default_rng(0).random((5, 12)) > 0.5).astype(np.float64)
    with jax.enable_x64(True):
        nv = build(spec, "numpyro", dtype="float64", seed=3)
        pv = build(spec, "pyro", dtype="float64", seed=3)
        nv.set_params(pv.get_params())
        draws = {s: np.asarray(v) for s, v in nv.sample_latents(x, 40, seed=1).items()}
        # Different budgets cut the draws differently; the result must not change.
        results = [importance_sample(v, x, latents=draws, budget=budget)
                   for v in (pv, nv) for budget in (7, 1000)]
    for other in results[1:]:
        for field in ("log_likelihood", "stderr", "ess", "elbo", "expected_log_likelihood"):
            # Same float64 arithmetic on both backends: round-off level agreement.
            np.testing.assert_allclose(getattr(other, field), getattr(results[0], field),
                                       rtol=1e-10)


@pytest.mark.parametrize(("k", "n", "budget"), [(5000, 500, 2**15), (10, 3, 4), (7, 100, 50),
                                                (1, 1, 1), (9, 2, 10**6)])
def test_chunk_plan_covers_k_within_the_budget(k, n, budget):
    plan = plan_chunks(k, n, budget)
    assert plan.particles_per_chunk * plan.data_per_batch <= max(budget, plan.particles_per_chunk)
    assert plan.particles_per_chunk * plan.num_chunks >= k
    assert plan.particles_per_chunk * (plan.num_chunks - 1) < k
    assert 1 <= plan.data_per_batch <= n
    with pytest.raises(ValueError, match="budget"):
        plan_chunks(k, n, 0)


def test_log_mean_exp_is_stable_and_its_se_is_the_delta_method():
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=(50, 4)) - 1e4  # exp underflows without the shift
    lme, se, ess = log_mean_exp(log_w)
    w = np.exp(log_w + 1e4)
    np.testing.assert_allclose(lme, np.log(w.mean(0)) - 1e4, rtol=1e-14)
    # se = sd(w) / (sqrt(K) mean(w)) and ESS = (Σw)²/Σw², computed directly.
    np.testing.assert_allclose(se, w.std(0, ddof=1) / (math.sqrt(50) * w.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(ess, w.sum(0) ** 2 / (w**2).sum(0), rtol=1e-12)
    with pytest.raises(FloatingPointError, match="datapoint 0"):
        log_mean_exp(np.full((3, 1), -np.inf))


# --------------------------------------------------------------------------- units


def test_bits_per_dim_arithmetic():
    assert bits_per_dim(-784 * math.log(2) * 1.5, 784) == pytest.approx(1.5, rel=1e-15)
    binary = likelihood_units("bernoulli", 64)
    assert binary.offset_nats == 0 and binary.discrete
    np.testing.assert_allclose(binary.bits_per_dim(-64 * math.log(2)), 1.0, rtol=1e-15)
    # Dequantized 8-bit data: −log P ≤ −log p(y) + D log 256, i.e. +8 bits/dim exactly.
    deq = likelihood_units("gaussian", 784, dequantized=True, max_value=255)
    assert deq.offset_nats == pytest.approx(784 * math.log(256), rel=1e-15)
    assert deq.offset_nats == dequantization_offset_nats(784, 255)
    log_density = np.array([1000.0, -500.0])
    np.testing.assert_allclose(deq.bits_per_dim(log_density),
                               -log_density / (784 * math.log(2)) + 8.0, rtol=1e-14)
    np.testing.assert_allclose(deq.nats(log_density), -log_density + 784 * math.log(256))
    assert "Theis" in deq.note
    density = likelihood_units("gaussian", 784)
    assert not density.discrete and "not a probability" in density.note
    with pytest.raises(ValueError, match="max_value"):
        likelihood_units("gaussian", 784, dequantized=True)


# --------------------------------------------------------------------------- errors


def test_encoder_free_models_need_training_indices():
    spec = load_spec("latent_laplace").replace(data_shape=(12,), latent_dim=2,
                                               decoder=NetworkSpec(hidden=(8,)))
    vae = build(spec, "pyro", num_data=10, dtype="float64")
    x = (np.random.default_rng(0).random((4, 12)) > 0.5).astype(np.float64)
    with pytest.raises(ValueError, match="held-out data has no code"):
        importance_sample(vae, x, 10)
    est = importance_sample(vae, x, 10, idx=np.array([0, 3, 5, 9]))
    assert np.all(np.isfinite(est.log_likelihood))
    point = build(spec.replace(posterior=type(spec.posterior)(codes="point")), "pyro",
                  num_data=10)
    with pytest.raises(ValueError, match="no density"):
        importance_sample(point, x, 10, idx=np.arange(4))


def test_bad_inputs_get_clear_errors():
    vae = build(SMALL, "pyro")
    with pytest.raises(ValueError, match="expects 12"):
        importance_sample(vae, np.zeros((3, 5)), 10)
    with pytest.raises(ValueError, match="non-binary"):
        importance_sample(vae, np.full((3, 12), 0.5), 10)
    with pytest.raises(ValueError, match="sites"):
        importance_sample(vae, np.zeros((3, 12)), latents={"w": np.zeros((4, 3, 3))})


# --------------------------------------------------------------------------- CLI


def _digits_run(tmp_path, backend, binarization="static"):
    spec = load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=4, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(16,)))
    config = {"seed": 0, "data": {"source": "digits", "binarization": binarization,
                                  "fractions": [0.8, 0.1, 0.1], "seed": 0}}
    return create_run(tmp_path / f"run-{backend}-{binarization}", build(spec, backend), config)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_cli_writes_a_tidy_metrics_csv_and_prints_the_table(tmp_path, capsys, backend):
    run = _digits_run(tmp_path, backend)
    args = ["evaluate", str(run), "--num-samples", "64", "--model-samples", "10"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "log p(x), importance-sampled (nats)" in out and "bits/dim need no offset" in out
    table = pd.read_csv(run / "metrics.csv")
    # the headline on screen, every metric in the file it names
    assert "kl_dim_0" not in out and "log_likelihood_is" not in out
    assert f"wrote all {len(table)} metrics of the test split" in out
    assert str(run / "metrics.csv") in out
    assert list(table.columns) == ["run", "split", "metric", "value", "stderr",
                                   "stderr_source"]
    assert set(table["split"]) == {"test"} and set(table["run"]) == {run.name}
    source = table.set_index("metric")["stderr_source"].fillna("")
    assert source["log_likelihood_is"] == "monte-carlo" and source["elbo"] == "monte-carlo"
    assert source["reconstruction_mse"] == "datapoints" and source["active_units"] == ""
    value = table.set_index("metric")["value"]
    # Bernoulli data: bits/dim = −log p(x) / (64 ln 2), nats = −log p(x); the means commute.
    assert value["bits_per_dim"] == pytest.approx(-value["log_likelihood_is"]
                                                  / (64 * math.log(2)), rel=1e-12)
    assert value["nll_nats"] == pytest.approx(-value["log_likelihood_is"], rel=1e-12)
    assert value["log_likelihood_is"] >= value["elbo"]
    assert {"kl_dim_0", "kl_dim_3", "active_units", "reconstruction_mse",
            "nn_distance_samples", "nn_distance_data"} <= set(value.index)
    # A second split is added beside the first; re-evaluating a split replaces its rows.
    assert main(args + ["--split", "valid", "--num-points", "20"]) == 0
    assert main(args + ["--split", "valid", "--num-points", "20"]) == 0
    table = pd.read_csv(run / "metrics.csv")
    counts = table.groupby("split").size()
    assert counts["test"] == counts["valid"] == len(value)
    # a metrics.csv from before stderr_source existed is upgraded, its rows kept
    table.drop(columns="stderr_source").to_csv(run / "metrics.csv", index=False)
    assert main(args + ["--split", "valid", "--max-points", "20"]) == 0
    upgraded = pd.read_csv(run / "metrics.csv")
    assert "stderr_source" in upgraded and upgraded.groupby("split").size()["test"] == len(value)


def test_cli_states_units_for_dequantized_and_dynamically_binarized_data(tmp_path, capsys):
    # A fixed likelihood scale: a learned one is a 0-d parameter, which the run files do
    # not round-trip yet (safetensors loads it as shape (1,)).
    spec = load_spec("linear_gaussian").replace(data_shape=(64,), latent_dim=3,
                                                likelihood=Gaussian(scale=0.2))
    data = {"source": "digits", "dequantize": True, "fractions": [0.8, 0.1, 0.1], "seed": 0}
    run = create_run(tmp_path / "deq", build(spec, "pyro"), {"seed": 0, "data": data})
    args = ["--num-samples", "16", "--model-samples", "0", "--num-points", "5"]
    assert main(["evaluate", str(run), *args]) == 0
    assert "D·log(16 + 1) subtracted" in capsys.readouterr().out
    value = pd.read_csv(run / "metrics.csv").set_index("metric")["value"]
    # Digits have 17 grey levels: offset 64·log 17, added to −log p in nats and bits/dim.
    offset = 64 * math.log(17)
    assert value["dequantization_offset_nats"] == pytest.approx(offset, rel=1e-12)
    assert value["nll_nats"] == pytest.approx(offset - value["log_likelihood_is"], rel=1e-12)
    assert value["bits_per_dim"] == pytest.approx(value["nll_nats"] / (64 * math.log(2)),
                                                  rel=1e-12)
    dynamic = _digits_run(tmp_path, "pyro", binarization="dynamic")
    assert main(["evaluate", str(dynamic), *args]) == 0
    assert "one static binarization" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_runs_ais_beside_importance_sampling(tmp_path):
    run = _digits_run(tmp_path, "pyro")
    assert main(["evaluate", str(run), "--num-samples", "500", "--ais", "3",
                 "--ais-steps", "300", "--model-samples", "0"]) == 0
    value = pd.read_csv(run / "metrics.csv").set_index("metric")["value"]
    assert value["ais_points"] == 3
    assert np.isfinite(value["ais_log_likelihood"]) and np.isfinite(value["ais_minus_is"])


def test_cli_refuses_held_out_data_of_an_encoder_free_run(tmp_path, capsys):
    spec = load_spec("latent_laplace").replace(data_shape=(64,), latent_dim=2,
                                               decoder=NetworkSpec(hidden=(8,)))
    config = {"seed": 0, "num_data": 1437,
              "data": {"source": "digits", "binarization": "static",
                       "fractions": [0.8, 0.1, 0.1], "seed": 0}}
    run = create_run(tmp_path / "glo", build(spec, "pyro", num_data=1437), config)
    assert main(["evaluate", str(run), "--split", "test", "--num-samples", "8"]) == 2
    assert "--ais-start prior" in capsys.readouterr().err


# --------------------------------------------------------------------------- example


def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "evaluate_likelihood.py"
    spec = importlib.util.spec_from_file_location("evaluate_likelihood_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_in_smoke_mode(tmp_path):
    example = _example()
    html = example.main(example.parse_args(["--smoke", "--out-dir", str(tmp_path)]))
    assert html.exists() and (tmp_path / "evaluate_likelihood.md").exists()
    text = (tmp_path / "evaluate_likelihood.md").read_text()
    assert "IWAE, K=100" in text and "ELBO" in text and "AIS" not in text


@pytest.mark.slow
def test_example_runs_with_ais(tmp_path):
    example = _example()
    example.main(example.parse_args(["--smoke", "--ais-points", "2", "--out-dir",
                                     str(tmp_path)]))
    assert "AIS, 50 steps" in (tmp_path / "evaluate_likelihood.md").read_text()


def test_chunks_shrink_for_priors_and_likelihoods_that_hold_more_numbers_per_draw():
    """A pair holds D = 784 decoded numbers, D · 256 for the categorical, K · d = 10⁴ for the
    500-component VampPrior's log-density: the chunk keeps budget · D numbers."""
    from ppl_vae.evaluation.importance import pairs_per_chunk

    assert pairs_per_chunk(load_spec("gaussian_gaussian"), 8192) == 8192
    assert pairs_per_chunk(load_spec("gaussian_vampprior"), 8192) == 8192 * 784 // (500 * 20)
    assert pairs_per_chunk(load_spec("conv_gaussian_dlogistic"), 8192) == 8192 // 15
    assert pairs_per_chunk(load_spec("gaussian_vampprior"), 1) == 1
