"""Evaluation of 8-bit and locally autoregressive models through the evaluation table."""

import dataclasses

import numpy as np
import pytest

from ppl_vae.evaluation import evaluate_split, likelihood_units
from ppl_vae.models import build, load_spec
from ppl_vae.spec import NetworkSpec


def test_uniform_categorical_vae_scores_exactly_8_bits_per_dim():
    """Zero decoder weights give P(x_d) = 1/256; an encoder emitting N(0, 1) (the prior) makes
    every importance weight p(x | z), so the IS estimate is −D log 256: 8 bits/dim."""
    spec = load_spec("conv_patches_categorical").replace(
        data_shape=(12,), encoder=NetworkSpec(hidden=()), decoder=NetworkSpec(hidden=()))
    vae = build(spec, "pyro", dtype="float64")
    params = {k: np.zeros_like(v) for k, v in vae.get_params().items()}
    # scale softplus(raw) + floor = 1
    params["encoder.0.bias"][spec.latent_dim:] = np.log(np.expm1(1.0 - spec.scale_floor))
    vae.set_params(params)
    x = np.random.default_rng(0).integers(0, 256, (5, 12)).astype(np.float64)
    table, notes = evaluate_split(vae, x, units=likelihood_units("categorical", 12))
    values = table.set_index("metric")["value"]
    assert values["bits_per_dim"] == pytest.approx(8.0, rel=1e-12)
    assert values["dequantization_offset_nats"] == 0
    assert any("8-bit pixels" in note for note in notes)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_local_autoregressive_model_evaluates_without_a_decoder_mean(backend):
    spec = load_spec("vlae_local")
    spec = spec.replace(data_shape=(6, 6), latent_dim=2, encoder=NetworkSpec(hidden=(4,)),
                        decoder=dataclasses.replace(spec.decoder, hidden=(4,), masked_layers=2,
                                                    masked_channels=3))
    vae = build(spec, backend)
    x = (np.random.default_rng(1).random((4, 36)) < 0.5).astype(np.float32)
    table, notes = evaluate_split(vae, x, train=x)
    metrics = set(table["metric"])
    assert {"log_likelihood_is", "bits_per_dim", "kl"} <= metrics
    assert not {"reconstruction_mse", "nn_distance_samples"} & metrics
    assert sum("no decoder mean" in note for note in notes) == 2
