"""Tests for :mod:`ppl_vae.models.objectives`: the objective math both backends share."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppl_vae.models import objectives
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps

RNG = np.random.default_rng(0)
# Plates: particles at dim -3, data at -2, an inner plate of 5 at -1 (float32 arrays: JAX
# runs without x64, so both backends are compared in float32: sums of up to 6 terms of size
# ~1 are exact to a few ulps, rtol 1e-6 plus atol 1e-6 where they cancel near zero).
INNER = RNG.normal(size=(3, 4, 5)).astype(np.float32)    # a site in all three plates
DATA = RNG.normal(size=(3, 4, 1)).astype(np.float32)     # a site in particles and data
GLOBAL = RNG.normal(size=(3, 1, 1)).astype(np.float32)   # a site in the particle plate only
BACKENDS = [(TorchOps, torch.as_tensor), (JaxOps, jnp.asarray)]


@pytest.mark.parametrize(("ops", "array"), BACKENDS)
def test_shared_plate_log_weight_sums_what_is_not_shared(ops, array):
    # keep = the plates every site is in: the inner plate is summed away, signs subtract
    # the guide's terms.
    sites = [(1.0, array(INNER)), (1.0, array(DATA)), (-1.0, array(0.5 * DATA))]
    got = objectives.shared_plate_log_weight(ops, sites, keep={-3, -2})
    expected = INNER.sum(-1, keepdims=True) + 0.5 * DATA
    assert tuple(got.shape) == (3, 4, 1)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)
    # with a global site only the particle plate is shared: data is summed as well
    with_global = objectives.shared_plate_log_weight(
        ops, [(1.0, array(GLOBAL)), (1.0, array(DATA))], keep={-3})
    assert tuple(with_global.shape) == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(with_global)[:, 0, 0],
                               GLOBAL[:, 0, 0] + DATA[..., 0].sum(-1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("ops", "array"), BACKENDS)
def test_normalized_weights_are_the_iwae_bound_and_its_softmax(ops, array):
    log_w = (RNG.normal(size=(6, 2)) * 3).astype(np.float32).astype(np.float64)
    bound, weights = objectives.normalized_weights(ops, array(log_w.astype(np.float32)), 6)
    top = log_w.max(0)
    expected = top + np.log(np.exp(log_w - top).mean(0))
    np.testing.assert_allclose(np.asarray(bound), expected, rtol=1e-6)
    softmax = np.exp(log_w - top) / np.exp(log_w - top).sum(0)
    np.testing.assert_allclose(np.asarray(weights), softmax, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weights).sum(0), 1.0, rtol=1e-6)


def test_common_scale_takes_one_scale_and_refuses_several():
    assert objectives.common_scale([None, 1.0]) == 1.0
    assert objectives.common_scale([torch.tensor(2.5), 2.5]) == 2.5
    with pytest.raises(ValueError, match="one scale shared by every sample site"):
        objectives.common_scale([1.0, 3.0])


def test_reparameterization_and_closed_form_checks_name_the_sites():
    normal = torch.distributions.Normal(0.0, 1.0)
    bernoulli = torch.distributions.Bernoulli(0.3)
    objectives.require_reparameterized([("z", normal)], "stl")
    with pytest.raises(ValueError, match=r"sites \['gate'\] are not reparameterized"):
        objectives.require_reparameterized([("z", normal), ("gate", bernoulli)], "dreg")
    objectives.check_closed_form_kl([("z", normal, normal)], TorchOps.kl_divergence)
    cauchy = torch.distributions.Cauchy(0.0, 1.0)
    with pytest.raises(ValueError, match="no closed-form KL between Normal and Cauchy"):
        objectives.check_closed_form_kl([("z", normal, cauchy)], TorchOps.kl_divergence)
    assert math.isfinite(float(TorchOps.kl_divergence(normal, normal)))
