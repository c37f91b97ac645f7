"""The 8-bit likelihoods (discretized logistic mixture, 256-way categorical): normalized,
equal to a direct reference computation, exact bits/dim, the same on both backends."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from ppl_vae.evaluation import likelihood_units
from ppl_vae.families import Categorical256, DiscretizedLogistic
from ppl_vae.models.numpyro_backend import JaxOps
from ppl_vae.models.pyro_backend import TorchOps

LEVELS = np.arange(256.0)
BACKENDS = {"pyro": (TorchOps, torch.as_tensor), "numpyro": (JaxOps, jnp.asarray)}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def every_level(ops, to_array, family, table):
    """log P(x_d = v) for v = 0..255: ``table`` (D, P) repeated for each level, (D, 256)."""
    tables = np.repeat(table[:, None, :], 256, axis=1)
    x = np.broadcast_to(LEVELS, tables.shape[:-1]).copy()
    return np.asarray(family.log_prob_values(ops, to_array(tables), to_array(x)))


def random_logistic_table(rng, family, num_values):
    k = family.components
    return np.concatenate([rng.normal(size=(num_values, k)) * 2,
                           rng.uniform(-1.5, 1.5, (num_values, k)),
                           rng.normal(size=(num_values, k)) * 3 - 2], axis=-1)


def reference_logistic(table, x, family):
    """log P(x) from logistic CDF differences in 50-digit arithmetic (scales as the family
    maps them: softplus(raw) + min_scale)."""
    mpmath.mp.dps = 50
    k = family.components
    logits, loc, raw = table[:k], table[k:2 * k], table[2 * k:]
    weights = scipy.special.softmax(logits)
    total = mpmath.mpf(0)
    for w, m, r in zip(weights, loc, raw, strict=True):
        s = mpmath.log1p(mpmath.exp(mpmath.mpf(r))) + family.min_scale
        c = mpmath.mpf(2) * x / 255 - 1

        half = mpmath.mpf(1) / 255
        # CDF differences left of the location, survival-function differences right of it
        sign = 1 if c < m else -1

        def tail(y, m=m, s=s, sign=sign):
            return 1 / (1 + mpmath.exp(-sign * (y - m) / s))

        upper = (1 if x == 255 else tail(c + half)) if sign > 0 else (
            0 if x == 255 else tail(c + half))
        lower = (0 if x == 0 else tail(c - half)) if sign > 0 else (
            1 if x == 0 else tail(c - half))
        total += mpmath.mpf(w) * sign * (upper - lower)
    return float(mpmath.log(total))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", [DiscretizedLogistic(components=1),
                                    DiscretizedLogistic(components=4), Categorical256()])
def test_probabilities_sum_to_one_over_the_256_levels(backend, family):
    ops, to_array = BACKENDS[backend]
    rng = np.random.default_rng(1)
    if isinstance(family, Categorical256):
        table = rng.normal(size=(7, 256)) * 3
    else:
        table = random_logistic_table(rng, family, 7)
    log_p = every_level(ops, to_array, family, table)
    np.testing.assert_allclose(scipy.special.logsumexp(log_p, axis=-1), 0.0, atol=1e-9)


def test_discretized_logistic_matches_logistic_cdf_differences():
    family = DiscretizedLogistic(components=3)
    rng = np.random.default_rng(2)
    table = random_logistic_table(rng, family, 5)
    log_p = every_level(TorchOps, torch.as_tensor, family, table)
    # scipy's logistic CDF in float64: differences of CDFs left of the location and of
    # survival functions right of it, so that neither side loses digits to cancellation
    k = family.components
    loc = table[:, None, k:2 * k]
    scale = np.logaddexp(0, table[:, None, 2 * k:]) + family.min_scale
    c = (2 * LEVELS / 255 - 1)[None, :, None]
    top, bottom = LEVELS[None, :, None] == 255, LEVELS[None, :, None] == 0
    logistic = scipy.stats.logistic(loc, scale)
    by_cdf = (np.where(top, 1.0, logistic.cdf(c + 1 / 255))
              - np.where(bottom, 0.0, logistic.cdf(c - 1 / 255)))
    by_sf = (np.where(bottom, 1.0, logistic.sf(c - 1 / 255))
             - np.where(top, 0.0, logistic.sf(c + 1 / 255)))
    bins = np.where(c < loc, by_cdf, by_sf)
    weights = scipy.special.softmax(table[:, :k], axis=-1)[:, None, :]
    expected = np.log(np.sum(weights * bins, axis=-1))
    np.testing.assert_allclose(log_p, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("raw_scale,loc", [(-12.0, 0.9), (-6.0, -0.99), (4.0, 3.0), (0.0, -30.0)])
def test_discretized_logistic_is_exact_in_the_tails(raw_scale, loc):
    """Tiny scales, locations at or beyond the edges: probabilities down to e^-2000, where
    naive CDF differences give log(0); the log-domain form agrees with 50-digit arithmetic."""
    family = DiscretizedLogistic(components=1)
    table = np.array([[0.0, loc, raw_scale]])
    log_p = every_level(JaxOps, jnp.asarray, family, table)[0]
    assert np.all(np.isfinite(log_p))
    for v in (0, 1, 37, 128, 254, 255):
        np.testing.assert_allclose(log_p[v], reference_logistic(table[0], v, family), rtol=1e-9)


def test_categorical_is_the_log_softmax_of_its_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 6, 256)) * 2
    x = rng.integers(0, 256, (4, 6)).astype(np.float64)
    out = Categorical256().log_prob_values(TorchOps, torch.as_tensor(logits), torch.as_tensor(x))
    expected = np.take_along_axis(scipy.special.log_softmax(logits, -1),
                                  x.astype(int)[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("family", [DiscretizedLogistic(components=2), Categorical256()])
def test_backends_agree(family):
    rng = np.random.default_rng(4)
    out = rng.normal(size=(3, 2, 10 * family.outputs_per_value))
    x = rng.integers(0, 256, (2, 10)).astype(np.float64)
    x[0, :2] = (0, 255)  # the edge bins
    values = {}
    for name, (ops, to_array) in BACKENDS.items():
        d = family.distribution(ops, {}, to_array(out), 1e-5)
        values[name] = (np.asarray(d.log_prob(to_array(x))), np.asarray(d.mean))
        assert tuple(d.batch_shape) == (3, 2) and tuple(d.event_shape) == (10,)
    for a, b in zip(values["pyro"], values["numpyro"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("family", [DiscretizedLogistic(components=2), Categorical256()])
def test_mean_is_the_sum_over_levels(family):
    rng = np.random.default_rng(5)
    table = rng.normal(size=(4, family.outputs_per_value))
    log_p = every_level(TorchOps, torch.as_tensor, family, table)
    mean = family.mean_values(TorchOps, torch.as_tensor(table)).numpy()
    np.testing.assert_allclose(mean, np.exp(log_p) @ LEVELS, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", [DiscretizedLogistic(components=2), Categorical256()])
def test_samples_follow_the_probabilities(backend, family):
    """Empirical frequencies of 20,000 draws of one value match P(v): each of the most
    probable levels within 5 binomial standard errors (a z-test per level)."""
    ops, to_array = BACKENDS[backend]
    n = 20_000
    table = np.random.default_rng(6).normal(size=(1, family.outputs_per_value))
    if isinstance(family, DiscretizedLogistic):
        table[0, 2:4] = (-0.3, 0.5)  # two locations inside [-1, 1]
    probs = np.exp(every_level(ops, to_array, family, table)[0])
    d = family.distribution(ops, {}, to_array(np.repeat(table.reshape(1, -1), n, 0)), 1e-5)
    draws = d.sample() if backend == "pyro" else d.sample(jax.random.PRNGKey(0))
    draws = np.asarray(draws)[:, 0]
    assert np.all(draws == np.round(draws)) and draws.min() >= 0 and draws.max() <= 255
    freq = np.bincount(draws.astype(int), minlength=256) / n
    top = np.argsort(probs)[-5:]
    se = np.sqrt(probs[top] * (1 - probs[top]) / n)
    assert np.all(np.abs(freq[top] - probs[top]) < 5 * se)


def test_uniform_model_has_exactly_8_bits_per_dim():
    """Zero logits: P(x_d) = 1/256 for every value, so −log P(x) = D log 256 nats and the
    bits/dim are 8 with no offset."""
    d = Categorical256().distribution(TorchOps, {}, torch.zeros(3, 12 * 256, dtype=torch.float64),
                                      1e-5)
    x = torch.as_tensor(np.random.default_rng(7).integers(0, 256, (3, 12)), dtype=torch.float64)
    units = likelihood_units("categorical", 12)
    np.testing.assert_allclose(units.bits_per_dim(d.log_prob(x).numpy()), 8.0, rtol=1e-14)
    assert units.offset_nats == 0 and units.discrete


def test_known_discretized_logistic_bits_per_dim():
    """One component at location 0 with scale s: P(x) is a closed-form CDF difference, and
    bits/dim are −Σ_d log2 P(x_d) / D."""
    family = DiscretizedLogistic(components=1, min_scale=1e-3)
    raw = 0.2
    s = np.log1p(np.exp(raw)) + 1e-3
    x = np.array([[0.0, 64.0, 127.0, 128.0, 200.0, 255.0]])
    c = 2 * x / 255 - 1
    upper = np.where(x == 255, 1.0, scipy.special.expit((c + 1 / 255) / s))
    lower = np.where(x == 0, 0.0, scipy.special.expit((c - 1 / 255) / s))
    expected = -np.log2(upper - lower).sum() / x.size
    out = torch.as_tensor(np.tile([0.0, 0.0, raw], (1, 6)), dtype=torch.float64)
    d = family.distribution(TorchOps, {}, out, 1e-5)
    units = likelihood_units("discretized-logistic", 6)
    np.testing.assert_allclose(units.bits_per_dim(d.log_prob(torch.as_tensor(x)).numpy()),
                               expected, rtol=1e-12)


def test_family_options_are_checked():
    with pytest.raises(ValueError, match="components"):
        DiscretizedLogistic(components=0)
    with pytest.raises(ValueError, match="min_scale"):
        DiscretizedLogistic(min_scale=0.0)
