"""Tests for :func:`ppl_vae.data.prepare`: load, scale, split and check in one call."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppl_vae import data
from ppl_vae.data import DataError, RawData, ppca

# --- prepare ------------------------------------------------------------------------------


def test_prepare_mnist5k_static_bernoulli(mnist):
    splits = data.prepare("mnist5k", likelihood="bernoulli", seed=2)
    assert splits.train.shape == (4000, 784) and splits.train.dtype == np.float32
    assert set(np.unique(splits.train)) == {0.0, 1.0}
    assert not splits.dynamic_binarization and not splits.dequantized
    np.testing.assert_array_equal(
        splits.indices["valid"], data.split(mnist, seed=2).indices["valid"]
    )
    again = data.prepare("mnist5k", likelihood="bernoulli", seed=2)
    np.testing.assert_array_equal(splits.test, again.test)


def test_prepare_dynamic_and_threshold_binarization(mnist):
    dynamic = data.prepare(mnist, likelihood="bernoulli", binarization="dynamic")
    assert dynamic.dynamic_binarization
    idx = dynamic.indices["train"]
    np.testing.assert_allclose(dynamic.train, mnist.values[idx] / 255.0, rtol=1e-6)
    threshold = data.prepare(mnist, likelihood="bernoulli", binarization="threshold")
    np.testing.assert_array_equal(threshold.train, mnist.values[idx] / 255.0 > 0.5)


def test_prepare_gaussian_scales_and_dequantizes():
    digits = data.load_digits()
    plain = data.prepare("digits", likelihood="gaussian", data_shape=[64])
    idx = plain.indices["test"]
    np.testing.assert_allclose(plain.test, digits.values[idx] / 16.0, rtol=1e-6)
    assert plain.max_value == 16 and plain.image_shape == (8, 8)

    deq = data.prepare("digits", likelihood="gaussian", dequantize=True)
    assert deq.dequantized and deq.train.max() < 1 and deq.train.min() >= 0
    np.testing.assert_array_equal(np.floor(deq.test.astype(np.float64) * 17), digits.values[idx])
    offset = data.dequantization_offset_nats(deq.data_dim, deq.max_value)
    assert offset == pytest.approx(64 * math.log(17))


def test_prepare_accepts_raw_arrays():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(50, 6, 6)).astype(np.float64)
    labels = np.arange(50) % 3
    splits = data.prepare(pixels, labels=labels, likelihood="gaussian", fractions=(0.6, 0.2, 0.2))
    assert splits.image_shape == (6, 6) and splits.max_value == 255
    idx = splits.indices["train"]
    np.testing.assert_allclose(splits.train, pixels.reshape(50, 36)[idx] / 255, rtol=1e-6)
    np.testing.assert_array_equal(splits.train_labels, labels[idx])

    in_unit = rng.random((20, 4)).astype(np.float32)
    kept = data.prepare(in_unit, likelihood="gaussian", data_shape=(2, 2))
    np.testing.assert_array_equal(kept.train, in_unit[kept.indices["train"]])
    assert kept.image_shape == (2, 2)

    twelve_levels = RawData(values=np.arange(40).reshape(10, 4) % 12, max_value=11)
    scaled = data.prepare(twelve_levels, likelihood="gaussian", fractions=(0.5, 0.3, 0.2))
    assert scaled.max_value == 11 and scaled.train.max() <= 1

    binary = data.prepare(rng.random((20, 4)) > 0.5, likelihood="bernoulli")
    assert set(np.unique(binary.train)) <= {0.0, 1.0}


def test_prepare_keeps_continuous_data_and_rejects_it_for_bernoulli():
    raw, _ = ppca.ppca_synthetic(num_data=100, data_dim=4, seed=0)
    splits = data.prepare(raw, likelihood="gaussian")
    np.testing.assert_array_equal(splits.train, raw.values[splits.indices["train"]])
    assert splits.max_value is None
    with pytest.raises(DataError, match="dequantized"):
        data.prepare(raw, likelihood="gaussian", dequantize=True)
    for binarization in data.BINARIZATIONS:
        with pytest.raises(DataError, match=r"\[0, 1\]"):
            data.prepare(raw, likelihood="bernoulli", binarization=binarization)


def test_prepare_reports_bad_inputs():
    with pytest.raises(DataError, match=r"outside \[0, 255\]"):
        data.prepare(np.full((10, 3), 1000), likelihood="gaussian")
    with pytest.raises(DataError, match=r"outside \[0, 16\]"):
        data.prepare(RawData(values=np.full((10, 3), 20), max_value=16), likelihood="gaussian")
    with pytest.raises(DataError, match="64 values per datapoint.*784"):
        data.prepare("digits", likelihood="bernoulli", data_shape=[784])
    with pytest.raises(DataError, match="labels"):
        data.prepare(np.zeros((10, 3)), labels=np.zeros(9), likelihood="gaussian")
    with pytest.raises(DataError, match="NaN"):
        data.prepare(np.full((10, 3), np.nan), likelihood="gaussian")
    with pytest.raises(DataError, match="source"):
        data.prepare([[0.0, 1.0]], likelihood="gaussian")
    with pytest.raises(ValueError, match="binarization"):
        data.prepare("digits", likelihood="bernoulli", binarization="otsu")
    with pytest.raises(ValueError, match="dequantize"):
        data.prepare("digits", likelihood="bernoulli", dequantize=True)
    with pytest.raises(ValueError, match="likelihood"):
        data.prepare("digits", likelihood="poisson")
