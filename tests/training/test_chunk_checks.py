"""The NaN guard inside a chunk: the first bad step is found exactly, whatever reveals it.

The NumPyro engine checks the parameters once per chunk, on its final state, and only when that
check (or a loss) fails searches the chunk step by step. These tests make a step whose loss is
finite but whose update is not, in the middle of a chunk: the losses alone would name the step
after it (the first loss computed from the bad parameters).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl_vae.models
from ppl_vae import data as data_module
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import NonFiniteLossError, fit

BAD_UPDATE = 5
"""0-based index of the update made non-finite: the 6th step of the run."""


def tiny_spec():
    return ppl_vae.models.load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(16,)))


def nan_update_at(count):
    """An optax transformation that passes updates through, except the ``count``-th (0-based),
    which becomes NaN: a step whose loss was finite and whose parameters are not."""
    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, n, params=None):
        updates = jax.tree_util.tree_map(lambda u: jnp.where(n == count, jnp.nan, u), updates)
        return updates, n + 1

    return optax.GradientTransformation(init, update)


@pytest.fixture(scope="module")
def digits():
    return data_module.prepare("digits", likelihood="bernoulli")


def train(vae, digits, num_steps):
    optimizer = optax.chain(optax.adam(1e-3), nan_update_at(BAD_UPDATE))
    # batch 32: one chunk of 20 steps (an epoch of the digits is ~36 steps)
    return fit(vae, digits, num_steps=num_steps, batch_size=32, optimizer=optimizer,
               estimator="reparam", seed=0, progress=False)


def test_a_bad_update_with_a_finite_loss_stops_before_its_own_step(digits):
    vae = ppl_vae.models.build(tiny_spec(), "numpyro", seed=0)
    with pytest.raises(NonFiniteLossError) as caught:
        train(vae, digits, num_steps=20)
    err = caught.value
    assert err.step == BAD_UPDATE + 1  # 1-based: the step whose update was NaN, not the next
    train_rows = err.history[err.history["split"] == "train"]
    assert list(train_rows["step"]) == [1, 2, 3, 4, 5]
    assert np.isfinite(train_rows["loss"]).all()
    # the model holds the parameters after step 5: bit for bit those of a run of 5 steps
    clean = ppl_vae.models.build(tiny_spec(), "numpyro", seed=0)
    train(clean, digits, num_steps=BAD_UPDATE)
    for name, value in vae.get_params().items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(value, clean.get_params()[name])
