"""8-bit data: the natural-image patch sets, preparation that keeps integer pixels for the
8-bit likelihoods, and the refusals of data they cannot model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_sample_images

from ppl_vae import data
from ppl_vae.data import EIGHT_BIT_LIKELIHOODS, DataError, check_data


@pytest.mark.parametrize("size", [8, 16])
def test_patches_are_seeded_crops_of_the_sample_photographs(size):
    raw = data.load(f"patches{size}")
    assert raw.values.shape == (5000, 3 * size * size) and raw.values.dtype == np.uint8
    assert raw.image_shape == (3, size, size) and raw.max_value == 255
    np.testing.assert_array_equal(np.bincount(raw.labels), [2500, 2500])
    np.testing.assert_array_equal(raw.values, data.load_patches(size).values)  # seeded
    assert not np.array_equal(raw.values, data.load_patches(size, seed=1).values)
    # each patch is a crop of its photograph: find the first one by brute force
    photo = load_sample_images().images[raw.labels[0]]
    patch = raw.values[0].reshape(3, size, size).transpose(1, 2, 0)
    windows = np.lib.stride_tricks.sliding_window_view(photo, (size, size, 3))[..., 0, :, :, :]
    assert np.any(np.all(windows == patch, axis=(-3, -2, -1)))


@pytest.mark.parametrize("likelihood", EIGHT_BIT_LIKELIHOODS)
def test_prepare_keeps_integer_pixels_for_eight_bit_likelihoods(likelihood, mnist):
    splits = data.prepare("mnist5k", likelihood=likelihood, seed=1)
    assert splits.train.dtype == np.float32 and splits.train.max() == 255
    idx = splits.indices["test"]
    np.testing.assert_array_equal(splits.test, mnist.values[idx])
    assert not splits.dequantized and splits.max_value == 255
    patches = data.prepare("patches8", likelihood=likelihood, data_shape=[3, 8, 8])
    assert [len(getattr(patches, s)) for s in data.SPLIT_NAMES] == [4000, 500, 500]
    assert np.all(patches.valid == np.round(patches.valid))


@pytest.mark.parametrize("likelihood", EIGHT_BIT_LIKELIHOODS)
def test_binarized_scaled_or_non_eight_bit_data_are_refused(likelihood):
    rng = np.random.default_rng(0)
    binary = (rng.random((20, 16)) < 0.5).astype(np.float32)
    with pytest.raises(DataError, match=r"but array holds intensities 0..1 \(binarized"):
        data.prepare(binary, likelihood=likelihood)
    with pytest.raises(DataError, match="binarized or scaled to \\[0, 1\\]"):
        check_data(binary, likelihood=likelihood)
    with pytest.raises(DataError, match="holds intensities 0..16"):
        data.prepare("digits", likelihood=likelihood)
    with pytest.raises(DataError, match="holds continuous values"):
        data.prepare(rng.normal(size=(20, 4)) * 3, likelihood=likelihood)
    with pytest.raises(DataError, match="not all integers in 0..255"):
        check_data(binary * 200.5, likelihood=likelihood)
    with pytest.raises(ValueError, match="models the integer pixels directly"):
        data.prepare("mnist5k", likelihood=likelihood, dequantize=True)
