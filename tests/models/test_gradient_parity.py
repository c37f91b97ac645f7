"""Every estimator means the same gradient on both backends.

A float64 Pyro VAE and a NumPyro VAE share weights; on one subsampled minibatch (B = 6 of
N = 40 datapoints, so the N/B scale is part of the objective) each backend draws the gradient
many times, and the mean of every coordinate is compared: z = (m_pyro − m_numpyro) /
√(se_pyro² + se_numpyro²). |z| < 5 for each of the ~150 coordinates (a false alarm has
probability < 150 · 5.7e-7 < 1e-4 under a normal approximation). The test can fail: for each
estimator it also asserts that some coordinate of each parameter group has |m| > 6 · se of
the difference, so a 2× error of either backend there would give |z| > 6 > 5.
"""

import jax
import numpy as np
import pandas as pd
import pytest

import ppl_vae.models
from ppl_vae.estimators import get_estimator
from ppl_vae.variance import gradient_variance
from tests.models.test_build import small

B, N, Z, POWER = 6, 40, 5.0, 6.0


def draws(estimator):
    """Score-function estimators are ~50× noisier on the encoder: more draws for the power."""
    return 6000 if get_estimator(estimator).score_function else 800

CASES = [
    ("gaussian_gaussian", ["reparam", "analytic-kl", "iwae", "stl", "dreg"]),
    ("masked_laplace", ["reparam", "score", "vimco"]),
    ("masked_relaxed_laplace", ["score", "iwae", "vimco"]),
    ("latent_laplace", ["reparam"]),
]
SLOW_CASES = [
    ("gaussian_gaussian", ["score"]),
    ("masked_laplace", ["score-baseline", "score-nn-baseline"]),
    ("masked_relaxed_laplace", ["reparam", "dreg", "stl"]),
    ("latent_laplace", ["iwae", "dreg"]),
    ("gaussian_laplace", ["reparam", "score", "iwae", "vimco", "stl", "dreg"]),
    ("gaussian_learned_gaussian", ["reparam", "analytic-kl", "score", "score-nn-baseline",
                                   "iwae", "dreg"]),
    ("gaussian_mixture", ["reparam", "score", "iwae", "dreg"]),
    ("laplace_laplace", ["reparam", "analytic-kl", "score", "stl"]),
    ("linear_gaussian", ["reparam", "analytic-kl", "iwae", "vimco", "dreg"]),
]


def frames(name, estimators):
    with jax.enable_x64(True):
        spec = small(ppl_vae.models.load_spec(name))
        rng = np.random.default_rng(0)
        pyro_vae = ppl_vae.models.build(spec, "pyro", dtype="float64", num_data=N, seed=1)
        jax_vae = ppl_vae.models.build(spec, "numpyro", dtype="float64", num_data=N, seed=2)
        params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in pyro_vae.get_params().items()}
        pyro_vae.set_params(params)
        jax_vae.set_params(params)
        x = (rng.random((B, spec.data_dim)) < 0.4).astype(np.float64)
        if spec.likelihood.name != "bernoulli":
            x = rng.normal(size=(B, spec.data_dim))
        idx = np.sort(rng.choice(N, B, replace=False))
        out = []
        for vae in (pyro_vae, jax_vae):
            particles = [3 if get_estimator(e).multi_particle else 1 for e in estimators]
            rows = [gradient_variance(vae.model, vae.guide, vae.as_tensor(x), vae.as_index(idx),
                                      N, estimators=[e], num_particles=[k],
                                      num_draws=draws(e), by="coordinate", seed=0)
                    for e, k in zip(estimators, particles, strict=True)]
            out.append(pd.concat(rows, ignore_index=True))
    return out


def assert_backends_agree(name, estimators):
    """Assert the agreement; return max |z| per estimator (quoted in notes)."""
    pyro_rows, jax_rows = frames(name, estimators)
    keys = ["estimator", "particles", "group", "param", "index"]
    both = pyro_rows.merge(jax_rows, on=keys, suffixes=("_p", "_n"))
    assert len(both) == len(pyro_rows) == len(jax_rows)
    se = np.sqrt((both["variance_p"] + both["variance_n"]) / both["num_draws_p"])
    both["z"] = (both["mean_p"] - both["mean_n"]) / se
    both["power"] = both["mean_n"].abs() / se
    worst = both.loc[both["z"].abs().idxmax()]
    assert both["z"].abs().max() < Z, worst.to_dict()
    power = both.groupby(["estimator", "group"])["power"].max()
    assert (power > POWER).all(), power[power <= POWER]
    return both.groupby("estimator")["z"].apply(lambda z: z.abs().max())


@pytest.mark.parametrize("name, estimators", CASES)
def test_mean_gradients_agree_across_backends(name, estimators):
    assert_backends_agree(name, estimators)


@pytest.mark.slow
@pytest.mark.parametrize("name, estimators", SLOW_CASES)
def test_mean_gradients_agree_across_backends_on_the_rest_of_the_zoo(name, estimators):
    assert_backends_agree(name, estimators)
