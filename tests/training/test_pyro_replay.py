"""The recorded Pyro ELBO is the programs' Trace_ELBO step: same loss, same gradients, same draws.

Each case runs one step both ways from the same generator state: Pyro's ``Trace_ELBO`` through
the model and guide, and the graph :func:`record_elbo` recorded from them. They run the same
operations in the same order, so the gradients agree to float32 rounding (rtol 1e-6; measured:
bit for bit) and the generator ends in the same state (the same draws, exactly). The loss
differs only in Pyro adding its per-site totals as Python floats (float64): rtol 1e-6.
"""

import numpy as np
import pyro
import pytest
import torch

import ppl_vae.models
from ppl_vae.models import make_elbo
from ppl_vae.training import fit
from ppl_vae.training.pyro_engine import PyroEngine
from ppl_vae.training.pyro_replay import record_elbo

NUM_DATA = 100
RECORDED = ["gaussian_gaussian", "gaussian_vampprior", "gaussian_flowprior", "gaussian_mixture",
            "masked_relaxed_laplace", "latent_laplace", "conv_gaussian_dlogistic", "vlae_local",
            "cvae_mnist"]
"""Every kind of prior, posterior, network and likelihood of the zoo that has a
reparameterized guide."""


def minibatch(spec, batch=8):
    rng = np.random.default_rng(0)
    size = (batch, int(np.prod(spec.data_shape)))
    if spec.likelihood.data_kind == "binary":
        x = (rng.random(size) < 0.3).astype(np.float32)
    else:
        x = rng.integers(0, 256, size).astype(np.float32)  # 8-bit levels for 8-bit likelihoods
        if spec.likelihood.data_kind != "eight-bit":
            x /= 255.0
    idx = torch.arange(batch) + 3
    c = torch.arange(batch) % spec.condition.classes if spec.condition is not None else None
    return x, idx, c


def one_step(vae, loss_and_grads):
    torch.manual_seed(1)
    with pyro.validation_enabled(False):
        loss = loss_and_grads()
    grads = [p.grad.clone() for p in vae.parameters()]
    for p in vae.parameters():
        p.grad = None
    return loss, grads, torch.get_rng_state()


@pytest.mark.parametrize("name", RECORDED)
def test_a_replayed_step_is_the_programs_trace_elbo_step(name):
    spec = ppl_vae.models.load_spec(name)
    vae = ppl_vae.models.build(spec, "pyro", seed=0, num_data=NUM_DATA)
    x, idx, c = minibatch(spec)
    xb = vae.as_tensor(x)
    elbo, guide = make_elbo(vae, "reparam", 1)
    recorded = record_elbo(vae, guide, NUM_DATA, xb, idx, c)
    assert not isinstance(recorded, str), recorded

    def replayed():
        loss = recorded(xb, idx, c)
        loss.backward()
        return loss.item()

    ours = one_step(vae, replayed)
    pyros = one_step(vae, lambda: elbo.loss_and_grads(vae.model, guide, xb, idx, NUM_DATA, c=c))
    np.testing.assert_allclose(ours[0], pyros[0], rtol=1e-6)
    for a, b in zip(ours[1], pyros[1], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=0)
    assert torch.equal(ours[2], pyros[2])
    # and the draws are fresh at every replay: two steps from different states differ
    assert recorded(xb, idx, c).item() != recorded(xb, idx, c).item()


def test_a_guide_with_a_discrete_site_is_not_recorded():
    spec = ppl_vae.models.load_spec("masked_laplace")
    vae = ppl_vae.models.build(spec, "pyro", seed=0)
    x, idx, c = minibatch(spec)
    guide = make_elbo(vae, "reparam", 1)[1]
    reason = record_elbo(vae, guide, NUM_DATA, vae.as_tensor(x), idx, c)
    assert isinstance(reason, str) and "gate" in reason and "rsample" in reason


@pytest.mark.parametrize("estimator, particles, why_not", [
    ("reparam", 1, None), ("reparam", 2, "Trace_ELBO with 2 particle"),
    ("iwae", 2, "IWAE_ELBO"), ("score", 1, "without rsample need a score term: z")])
def test_fit_replays_only_the_single_sample_reparameterized_elbo(estimator, particles, why_not,
                                                                 monkeypatch):
    engines = []
    original = PyroEngine.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        engines.append(self)

    monkeypatch.setattr(PyroEngine, "__init__", keep)
    spec = ppl_vae.models.load_spec("gaussian_gaussian").replace(data_shape=(64,), latent_dim=2)
    x = (np.random.default_rng(0).random((64, 64)) < 0.3).astype(np.float32)
    fit(ppl_vae.models.build(spec, "pyro", seed=0), x, num_steps=2, batch_size=16,
        estimator=estimator, num_particles=particles, progress=False)
    (engine,) = engines
    assert engine.replay is None if why_not is None else why_not in engine.replay
