"""ppl_vae.training.fit (training/svi.py) on both backends: units of the history, estimators,
data checks at fit time, devices, optimizers, run directories, the NaN guard, and learning on
MNIST-5k."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

import ppl_vae.models
from ppl_vae import data as data_module
from ppl_vae.data import DataError
from ppl_vae.families import Gaussian
from ppl_vae.runs import CheckpointError, RunExistsError, load_run
from ppl_vae.runs import checkpoints as checkpoint
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import (
    DivergenceError,
    FitResult,
    NonFiniteLossError,
    batches,
    fit,
)

BACKENDS = ("pyro", "numpyro")


def tiny_spec(**changes):
    """784-400-20 shrunk to the 8x8 digits: 64-16-2, Bernoulli pixels, N(0, I) prior."""
    spec = ppl_vae.models.load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(16,)))
    return spec.replace(**changes) if changes else spec


@pytest.fixture(scope="module")
def digits():
    return data_module.prepare("digits", likelihood="bernoulli")


def quiet_fit(vae, data, **kwargs):
    kwargs.setdefault("estimator", "reparam")
    kwargs.setdefault("batch_size", 32)
    return fit(vae, data, progress=False, **kwargs)


def reference_log_weights(spec, x, num_draws, seed=3):
    """log w = log p(x, z) − log q(z | x) for ``num_draws`` draws z ~ q per point, shape
    ``(num_draws, N)``, at the initial weights of ``seed`` (the same on both backends),
    computed independently of fit from the Pyro model's ``log_prob_terms``."""
    vae = ppl_vae.models.build(spec, "pyro", seed=seed)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(12345)
        terms = vae.log_prob_terms(vae.as_tensor(x), vae.sample_latents(x, num_draws))
    return (terms["log_likelihood"] + terms["log_prior"] - terms["log_q"]).double().numpy()


def bound_and_se(log_w, num_particles=1):
    """The bound log (1/K) Σ_k w_k averaged over points, and the standard error of a
    one-estimate-per-point average over the same points: only the Monte Carlo spread within
    each point counts, since every estimator is evaluated on the same points."""
    draws, num = log_w.shape
    blocks = log_w[: draws // num_particles * num_particles].reshape(-1, num_particles, num)
    per_block = logsumexp(blocks, axis=1) - np.log(num_particles)
    return per_block.mean(), np.sqrt(per_block.var(axis=0, ddof=1).mean() / num)


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_is_tidy_and_in_nats_per_datapoint(backend, digits):
    vae = ppl_vae.models.build(tiny_spec(), backend, seed=3)
    result = quiet_fit(vae, digits, num_epochs=2, seed=5)
    assert isinstance(result, FitResult) and result.vae is vae and result.run_dir is None
    history = result.history
    assert list(history.columns) == ["step", "epoch", "split", "loss", "wall_time", "selected"]
    steps_per_epoch = len(digits.train) // 32
    train = history[history["split"] == "train"]
    np.testing.assert_array_equal(train["step"], np.arange(1, 2 * steps_per_epoch + 1))
    np.testing.assert_array_equal(train["epoch"], (train["step"] - 1) // steps_per_epoch)
    valid = history[history["split"] == "valid"]
    np.testing.assert_array_equal(valid["step"], [0, steps_per_epoch, 2 * steps_per_epoch])
    assert np.all(np.diff(history["wall_time"]) >= 0) and np.isfinite(history["loss"]).all()
    assert result.num_steps == 2 * steps_per_epoch
    # The step-0 validation loss is a one-draw −ELBO per datapoint at the initial weights;
    # compare it with an independent 400-draw estimate at the same weights, within 5 standard
    # errors of a one-draw average (~0.2 nats of ~45), while a batch-sum or N/B scaling error
    # would be off by a factor >= 5.
    elbo, se = bound_and_se(reference_log_weights(tiny_spec(), digits.valid, 400))
    tol = 5 * se
    assert abs(valid["loss"].iloc[0] + elbo) < tol
    # training learned something: the validation loss fell by more than its noise
    assert valid["loss"].iloc[-1] < valid["loss"].iloc[0] - tol


@pytest.mark.parametrize("backend", BACKENDS)
def test_estimators_by_name_evaluate_their_own_objective(backend, digits):
    """Each estimator name maps to its objective: at the initial weights the step-0 validation
    loss of reparam, analytic-kl, score and score-baseline is the −ELBO, and that of iwae with
    K = 32 is the −IWAE bound, 0.29 nats tighter here (~15 standard errors). References:
    4096 independent draws per point; tolerance 5 standard errors of a one-estimate-per-point
    average (the reference's own error is ~1/40 of that)."""
    log_w = reference_log_weights(tiny_spec(), digits.valid, 4096)
    elbo, se_elbo = bound_and_se(log_w)
    iwae, se_iwae = bound_and_se(log_w, 32)
    assert iwae - elbo > 10 * se_iwae  # the two objectives are told apart
    for name, particles, bound, se in (("reparam", 1, elbo, se_elbo),
                                       ("analytic-kl", 1, elbo, se_elbo),
                                       ("score", 1, elbo, se_elbo),
                                       ("score-baseline", 1, elbo, se_elbo),
                                       ("iwae", 32, iwae, se_iwae)):
        vae = ppl_vae.models.build(tiny_spec(), backend, seed=3)
        result = quiet_fit(vae, digits, num_steps=2, estimator=name, num_particles=particles,
                           eval_every=1)
        assert np.isfinite(result.history["loss"]).all()
        valid = result.history.query("split == 'valid'")["loss"].to_numpy()
        assert len(valid) == 3 and abs(valid[0] + bound) < 5 * se, name


# --------------------------------------------------------------------------- data and arguments


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["shape", "nan", "non-binary", "valid-nan"])
def test_bad_data_raises_at_fit_time(backend, case, digits, tmp_path):
    x, valid = digits.train.copy(), None
    match = {"shape": "values per datapoint", "nan": "NaN", "non-binary": "non-binary",
             "valid-nan": "validation data contains"}[case]
    if case == "shape":
        x = x[:, :60]
    elif case == "nan":
        x[7, 3] = np.nan
    elif case == "non-binary":
        x[2, 5] = 0.5
    else:
        valid = digits.valid.copy()
        valid[0, 0] = np.inf
    vae = ppl_vae.models.build(tiny_spec(), backend)
    with pytest.raises(DataError, match=match):
        quiet_fit(vae, x, validation_data=valid, num_steps=2, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written before the data were checked


def test_grey_levels_need_dynamic_binarization(digits):
    grey = data_module.prepare("digits", likelihood="bernoulli", binarization="dynamic")
    vae = ppl_vae.models.build(tiny_spec(), "pyro")
    with pytest.raises(DataError, match="non-binary"):
        quiet_fit(vae, grey.train, num_steps=1)


def test_dynamic_binarization_draws_a_fresh_binary_set_every_epoch(monkeypatch):
    grey = data_module.prepare("digits", likelihood="bernoulli", binarization="dynamic")
    calls = []
    original = data_module.binarize_dynamic

    def spy(x01, rng):
        out = original(x01, rng)
        calls.append(out)
        return out

    monkeypatch.setattr(data_module, "binarize_dynamic", spy)
    steps = len(grey.train) // 32
    quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), grey, num_steps=2 * steps + 1)
    assert len(calls) == 3  # epochs 0, 1 and the first step of epoch 2
    for draw in calls:
        assert set(np.unique(draw)) == {0.0, 1.0}
    assert not np.array_equal(calls[0], calls[1])
    # each draw is Bernoulli(grey level): the mean over all pixels matches the grey mean
    # within 5 standard errors sqrt(sum p(1-p)) / n
    p = grey.train.astype(np.float64)
    se = np.sqrt((p * (1 - p)).sum()) / p.size
    for draw in calls:
        assert abs(draw.mean() - p.mean()) < 5 * se
    # the held-out split is binarized once, identically for every training seed
    v0 = batches.prepare_training_data(tiny_spec(), grey, seed=0).valid
    v1 = batches.prepare_training_data(tiny_spec(), grey, seed=1).valid
    np.testing.assert_array_equal(v0, v1)
    assert set(np.unique(v0)) == {0.0, 1.0}


def test_epoch_order_is_a_fixed_permutation_per_seed_and_epoch():
    a = batches.epoch_order(seed=4, epoch=2, num_data=50, batch_size=8)
    assert a.shape == (6, 8) and len(np.unique(a)) == 48 and a.max() < 50
    np.testing.assert_array_equal(a, batches.epoch_order(4, 2, 50, 8))
    assert not np.array_equal(a, batches.epoch_order(4, 3, 50, 8))
    assert not np.array_equal(a, batches.epoch_order(5, 2, 50, 8))
    with pytest.raises(DataError, match="batch_size 60 is larger"):
        batches.epoch_order(0, 0, 50, 60)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_steps": 3, "num_epochs": 1}, ValueError, "not both"),
    ({"num_steps": 0}, ValueError, "num_steps must be"),
    ({"optimizer": "rmsprop"}, ValueError, "unknown optimizer"),
    ({"estimator": "stochastic"}, ValueError, "unknown estimator"),
    ({"seed": -1}, ValueError, "seed must be"),
    ({"batch_size": 5000}, DataError, "larger than"),
    ({"resume": True}, ValueError, "needs out_dir"),
])
def test_bad_arguments_are_refused(kwargs, error, match, digits):
    with pytest.raises(error, match=match):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, **kwargs)


def test_analytic_kl_needs_a_closed_form(digits):
    vae = ppl_vae.models.build(tiny_spec(kl="monte-carlo"), "pyro")
    with pytest.raises(ValueError, match="closed-form KL"):
        quiet_fit(vae, digits, estimator="analytic-kl", num_steps=1)


def test_spec_training_defaults_are_used(digits):
    spec = tiny_spec()
    spec = spec.replace(training=spec.training.__class__(num_steps=7, batch_size=64,
                                                        estimator="analytic-kl"))
    result = fit(ppl_vae.models.build(spec, "pyro"), digits, progress=False)
    assert result.num_steps == 7
    assert result.history.query("split == 'train'")["step"].max() == 7


# --------------------------------------------------------------------------- devices, optimizers


def test_cuda_without_cuda_is_a_clear_error(digits):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, device="cuda", num_steps=1)
    with pytest.raises(RuntimeError, match="JAX sees no GPU"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "numpyro"), digits, device="cuda",
                  num_steps=1)


def test_auto_device_is_cpu_without_a_gpu(digits):
    result = quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, device="auto",
                       num_steps=1)
    assert result.vae.device.type == "cpu"


@pytest.mark.parametrize("backend", BACKENDS)
def test_named_and_custom_optimizers(backend, digits):
    if backend == "pyro":
        import pyro.optim

        custom = pyro.optim.ClippedAdam({"lr": 3e-3, "clip_norm": 1.0})
    else:
        import optax

        custom = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
    for optimizer, lr in (("clipped-adam", 3e-3), (custom, None)):
        result = quiet_fit(ppl_vae.models.build(tiny_spec(), backend), digits, num_epochs=2,
                           optimizer=optimizer, learning_rate=lr)
        valid = result.history.query("split == 'valid'")["loss"].to_numpy()
        assert valid[-1] < valid[0] - 1.0  # ~4 nats drop in 88 steps; 1 nat is far above noise
    with pytest.raises(ValueError, match="learning_rate applies"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), backend), digits, optimizer=custom,
                  learning_rate=1e-3, num_steps=1)


def test_encoder_free_model_trains_on_its_own_codes(digits):
    spec = ppl_vae.models.load_spec("latent_laplace").replace(
        data_shape=(64,), latent_dim=2, decoder=NetworkSpec(hidden=(16,)))
    x = digits.train[:96]
    vae = ppl_vae.models.build(spec, "pyro", num_data=96)
    result = quiet_fit(vae, x, num_epochs=3)
    train = result.history.query("split == 'train'")
    assert len(train) == 9 and (result.history["split"] == "train").all()
    with pytest.raises(ValueError, match="build it with num_data=96"):
        quiet_fit(ppl_vae.models.build(spec, "pyro", num_data=50), x, num_steps=1)
    with pytest.raises(ValueError, match="no encoder"):
        quiet_fit(ppl_vae.models.build(spec, "pyro", num_data=96), x, num_steps=1,
                  validation_data=digits.valid)


# --------------------------------------------------------------------------- run directories


def test_run_directory_is_complete_and_loadable(digits, tmp_path):
    out = tmp_path / "run"
    result = quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=30,
                       checkpoint_every=10, out_dir=out,
                       data_config={"source": "digits", "binarization": "static",
                                    "dequantize": False, "fractions": [0.8, 0.1, 0.1],
                                    "seed": 0})
    assert result.run_dir == out
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest", "step-00000020", "step-00000030"]  # KEEP = 2 newest
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000030"
    run = load_run(out)
    for name, value in result.vae.get_params().items():
        np.testing.assert_array_equal(run.vae.get_params()[name], value)
    np.testing.assert_array_equal(run.splits().train, digits.train)
    saved = checkpoint.load_checkpoint(out / "checkpoints" / "step-00000030")
    assert saved.step == 30 and "history" not in saved.state
    assert (out / "history.csv").read_text() == saved.history_csv


def test_existing_run_is_never_overwritten_without_the_flag(digits, tmp_path):
    out = tmp_path / "run"
    quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=20,
              checkpoint_every=10, out_dir=out)
    before = (out / "params.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="--overwrite"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro", seed=1), digits, num_steps=5,
                  out_dir=out)
    assert (out / "params.safetensors").read_bytes() == before
    quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro", seed=1), digits, num_steps=5,
              out_dir=out, overwrite=True)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest",
                                                                       "step-00000005"]


def test_corrupt_or_mismatched_checkpoint_is_a_clear_error(digits, tmp_path):
    out = tmp_path / "run"
    quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=20,
              checkpoint_every=10, out_dir=out)
    with pytest.raises(CheckpointError, match="learning_rate was 0.001, now 0.01"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=30,
                  out_dir=out, resume=True, learning_rate=0.01)
    with pytest.raises(CheckpointError, match="backend was 'pyro'"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "numpyro"), digits, num_steps=30,
                  out_dir=out, resume=True)
    with pytest.raises(CheckpointError, match="spec differs"):
        quiet_fit(ppl_vae.models.build(tiny_spec(latent_dim=3), "pyro"), digits, num_steps=30,
                  out_dir=out, resume=True)
    with pytest.raises(CheckpointError, match="training data differ"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits.valid, num_steps=30,
                  out_dir=out, resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=30,
                  out_dir=tmp_path / "elsewhere", resume=True)
    params = out / "checkpoints" / "step-00000020" / "params.safetensors"
    blob = bytearray(params.read_bytes())
    blob[-3] ^= 0xFF
    params.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt.*previous checkpoint step-00000010"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=30,
                  out_dir=out, resume=True)


# --------------------------------------------------------------------------- NaN guard


def poisoned_data(seed=0, num=40, batch=16, value=3e38):
    """Gaussian data with one ``value`` (default 3e38) in a point that epoch 0 leaves out and
    epoch 1 visits in its first minibatch: the loss overflows exactly at step 3."""
    x = np.random.default_rng(1).random((num, 8)).astype(np.float32)
    first = batches.epoch_order(seed, 0, num, batch)
    second = batches.epoch_order(seed, 1, num, batch)
    left_out = sorted(set(range(num)) - set(first.ravel()))
    poison = next(i for i in left_out if i in second[0])
    x[poison, 3] = value
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_guard_names_step_and_site_and_keeps_the_last_good_checkpoint(backend, tmp_path):
    spec = tiny_spec(data_shape=(8,), likelihood=Gaussian(), kl="monte-carlo",
                     encoder=NetworkSpec(hidden=(4,)), decoder=NetworkSpec(hidden=(4,)))
    out = tmp_path / "run"
    vae = ppl_vae.models.build(spec, backend)
    with pytest.raises(NonFiniteLossError) as caught:
        quiet_fit(vae, poisoned_data(), num_steps=10, batch_size=16, checkpoint_every=2,
                  out_dir=out)
    err = caught.value
    assert err.step == 3
    assert "x (model)" in err.sites and err.parameters
    message = str(err)
    for needle in ("step 3", "x (model)", "3e+38", "lower the learning rate", "clipped-adam",
                   "check the data", "scale_floor", "step-00000002"):
        assert needle in message
    assert err.checkpoint == out / "checkpoints" / "step-00000002"
    assert checkpoint.latest_checkpoint(out) == err.checkpoint
    kept = checkpoint.load_checkpoint(err.checkpoint)
    assert kept.step == 2 and list(err.history["step"]) == [1, 2]
    # the model holds the parameters from before the bad step, i.e. those of the checkpoint
    for name, value in vae.get_params().items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(value, kept.params[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_guard_stops_a_finite_blow_up_like_a_nan(backend, tmp_path):
    """A value of 1e6 at step 3 gives a loss of ~1e11 nats (x²/2σ², σ ≈ 1): finite, so the
    NaN guard lets it through, but far above m + 100·max(|m|, 1), m ≈ 10 nats."""
    spec = tiny_spec(data_shape=(8,), likelihood=Gaussian(), kl="monte-carlo",
                     encoder=NetworkSpec(hidden=(4,)), decoder=NetworkSpec(hidden=(4,)))
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as caught:
        quiet_fit(ppl_vae.models.build(spec, backend), poisoned_data(value=1e6), num_steps=10,
                  batch_size=16, checkpoint_every=2, out_dir=out)
    err = caught.value
    assert err.step == 3 and list(err.history.query("split == 'train'")["step"]) == [1, 2]
    for needle in ("diverged at step 3", "m + 100·max(|m|, 1)", "step-00000002",
                   "lower the learning rate", "--divergence-factor"):
        assert needle in str(err)
    assert err.checkpoint == out / "checkpoints" / "step-00000002"
    assert checkpoint.latest_checkpoint(out) == err.checkpoint
    # switched off, the same run trains through the spike
    result = quiet_fit(ppl_vae.models.build(spec, backend), poisoned_data(value=1e6),
                       num_steps=4, batch_size=16, divergence_factor=None)
    assert result.history.query("split == 'train'")["loss"].max() > 1e9


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1e-3])
def test_non_finite_or_non_positive_learning_rates_are_refused(digits, lr):
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=1,
                  learning_rate=lr)


def test_a_learning_rate_that_overflows_adams_first_step_is_refused(digits):
    """torch's Adam raised a RuntimeError for lr / (1 - 0.9) past float32's 3.4e38."""
    with pytest.raises(ValueError, match="overflows float32 in Adam's first step.*3.4e"):
        quiet_fit(ppl_vae.models.build(tiny_spec(), "pyro"), digits, num_steps=1,
                  learning_rate=1e38)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_run_on_mnist5k_improves_the_validation_elbo(backend):
    """The 784-400-20 Gaussian VAE, 100 steps of batch 64 on 1024 MNIST-5k images: the
    validation −ELBO per image falls from ~550 nats by more than 320 nats. Measured (seeds
    0-2, both backends): 548-551 → 199-204 nats, drops of 346-351 nats; 320 is 26 nats (five
    seed-to-seed spreads) below the smallest, while a model that stopped learning, or learned
    markedly slower, fails."""
    splits = data_module.prepare("mnist5k", likelihood="bernoulli")
    vae = ppl_vae.models.build("gaussian_gaussian", backend)
    result = fit(vae, splits.train[:1024], validation_data=splits.valid, num_steps=100,
                 batch_size=64, estimator="reparam", eval_every=100, progress=False)
    valid = result.history.query("split == 'valid'")["loss"].to_numpy()
    assert valid[0] > 500
    assert valid[0] - valid[-1] > 320


def test_a_conditioned_spec_needs_labelled_data(digits):
    spec = ppl_vae.models.load_spec("cvae_mnist").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    vae = ppl_vae.models.build(spec, "pyro")
    with pytest.raises(DataError, match="a plain array has no labels.*labels=y"):
        quiet_fit(vae, digits.train, num_steps=1, batch_size=8)
    unlabelled = dataclasses.replace(digits, train_labels=None)
    with pytest.raises(DataError, match="digits train split has no labels"):
        quiet_fit(vae, unlabelled, num_steps=1, batch_size=8)
    bad = dataclasses.replace(digits, train_labels=digits.train_labels + 5)
    with pytest.raises(ValueError, match=r"training labels must lie in 0\.\.9"):
        quiet_fit(vae, bad, num_steps=1, batch_size=8)
