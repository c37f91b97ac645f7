"""Tests for :mod:`ppl_vae.data.checks`: data checks name the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vae import data
from ppl_vae.data import DataError

# --- check_data -----------------------------------------------------------------------------

_GOOD = np.zeros((3, 4))


@pytest.mark.parametrize(
    ("bad", "kwargs", "words"),
    [
        (np.array([["a", "b"]]), {}, ["numeric", "np.asarray"]),
        (np.array([object(), 1.0], dtype=object)[None], {}, ["numeric"]),
        (np.zeros(4), {}, ["(N, D)", "x[None]"]),
        (np.zeros((0, 4)), {}, ["empty"]),
        (np.zeros((3, 64)), {"data_shape": [784]}, ["64", "784", "data_shape=[784]", "spec"]),
        (np.where(np.eye(5) > 0, np.nan, 0.0), {}, ["5 NaN", "first in row 0", "isfinite"]),
        (np.vstack([_GOOD, [0, np.inf, 0, 0]]), {}, ["NaN or inf", "row 3"]),
        (np.full((2, 3), 0.5), {"likelihood": "bernoulli"}, ["binar", "'static'", "Gaussian"]),
        (np.full((2, 3), 200.0), {"likelihood": "bernoulli"}, ["[0, 1]", "255", "binarize"]),
        (np.full((2, 3), 300.0), {"max_value": 255}, ["outside [0, 255]", "rescale"]),
    ],
)
def test_check_data_errors_name_problem_and_fix(bad, kwargs, words):
    with pytest.raises(DataError) as info:
        data.check_data(bad, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_check_data_flattens_and_casts():
    images = np.ones((3, 28, 28), dtype=np.uint8)
    flat = data.check_data(images, data_shape=[784], likelihood="bernoulli")
    assert flat.shape == (3, 784) and flat.dtype == np.float32
    assert data.check_data(np.zeros((2, 784)), data_shape=(28, 28)).shape == (2, 784)
    assert data.check_data([[0.5, -3.0]], likelihood="gaussian").shape == (1, 2)
    with pytest.raises(ValueError, match="likelihood"):
        data.check_data(_GOOD, likelihood="poisson")
