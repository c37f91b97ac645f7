"""Specs and particle counts too large for this machine are refused before any array is
allocated (:mod:`ppl_vae.models.memory`), naming the size; the estimate is a lower bound."""

from __future__ import annotations

import re

import pytest

from ppl_vae.models import build, init_params, load_spec, zoo_names
from ppl_vae.models.memory import (
    MemoryRequestError,
    available_bytes,
    check_particles_fit,
    min_parameter_count,
)
from ppl_vae.spec import NetworkSpec


@pytest.mark.parametrize("name", zoo_names())
def test_the_estimate_is_a_lower_bound_of_the_zoos_parameter_counts(name):
    spec = load_spec(name)
    num_data = None if spec.posterior.amortized else 50
    actual = sum(a.size for a in init_params(spec, num_data=num_data).values())
    assert 0 < min_parameter_count(spec, num_data) <= actual


def test_the_estimate_of_an_mlp_vae_counts_its_weight_matrices():
    spec = load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(8,)))
    assert min_parameter_count(spec) == 64 * 16 + 16 * 2 + 2 * 8 + 8 * 64


@pytest.mark.parametrize("changes, words", [
    ({"latent_dim": 10**9}, "latent_dim 1000000000"),
    ({"decoder": NetworkSpec(hidden=(10**9,))}, "decoder hidden [1000000000]"),
])
def test_a_spec_too_large_is_refused_before_allocating(changes, words):
    spec = load_spec("gaussian_gaussian").replace(**changes)
    pattern = rf"{re.escape(words)}.* needs at least .*iB, more than the .* available; make"
    with pytest.raises(MemoryRequestError, match=pattern):
        build(spec, "numpyro")


def test_particles_too_many_for_memory_are_refused_naming_the_size():
    spec = load_spec("gaussian_gaussian")
    check_particles_fit(spec, 10, 128)  # 5 MB
    with pytest.raises(MemoryRequestError, match=r"--particles 100000000 with batch size 128 "
                                                 r"\(784 values per datapoint\) needs at least "
                                                 r"36.5 TiB"):
        check_particles_fit(spec, 10**8, 128)
    assert available_bytes() > 0
