"""Tests for :mod:`ppl_vae.data`: built-in datasets, file loaders, splits, preprocessing
(``sources``, ``transforms``, ``checks`` and ``prepare``)."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
from PIL import Image

from ppl_vae import data
from ppl_vae.data import DataError, RawData, ppca


@pytest.fixture(scope="module")
def mnist() -> RawData:
    return data.load_mnist5k()


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _save_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


class _EdgeRng:
    """Stands in for a Generator whose uniforms sit at one end of [0, 1)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self, shape):
        return np.full(shape, self.value)


# --- built-in datasets --------------------------------------------------------------------


def test_mnist5k_is_5000_uint8_images_of_10_classes(mnist):
    assert mnist.values.shape == (5000, 784)
    assert mnist.values.dtype == np.uint8
    assert mnist.values.min() == 0 and mnist.values.max() == 255
    assert mnist.labels.shape == (5000,)
    np.testing.assert_array_equal(np.unique(mnist.labels), np.arange(10))
    assert mnist.image_shape == (28, 28)
    assert mnist.max_value == 255
    assert mnist.name == "mnist5k"


def test_mnist5k_copies_do_not_share_memory(mnist):
    again = data.load_mnist5k()
    again.values[0, 0] = 7
    assert not np.shares_memory(again.values, mnist.values)


def test_digits_keep_native_0_to_16_scale():
    digits = data.load_digits()
    assert digits.values.shape == (1797, 64)
    assert digits.values.min() == 0 and digits.values.max() == 16
    assert digits.max_value == 16
    assert digits.image_shape == (8, 8)
    np.testing.assert_array_equal(np.unique(digits.labels), np.arange(10))


def test_load_dispatches_builtin_names(mnist):
    assert data.load().name == "mnist5k"
    assert data.load("DIGITS").name == "digits"


def test_unknown_dataset_name_lists_valid_names_and_file_kinds():
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    for word in ("'mnist'", "mnist5k", "digits", ".npz", "IDX", "PNG"):
        assert word in message


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


# --- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write = gzip.compress if compress else bytes
    suffix = ".gz" if compress else ""
    images_path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    labels_path = tmp_path / f"train-labels-idx1-ubyte{suffix}"
    images_path.write_bytes(write(_idx_bytes(images)))
    labels_path.write_bytes(write(_idx_bytes(labels)))

    raw = data.load_idx(images_path, labels_path)
    np.testing.assert_array_equal(raw.values, images.reshape(5, 12))
    assert raw.values.dtype == np.uint8
    np.testing.assert_array_equal(raw.labels, labels)
    assert raw.image_shape == (4, 3)
    assert raw.max_value == 255
    assert raw.name == "train-images-idx3-ubyte"

    # load() recognises the IDX header and picks up the MNIST-named labels file.
    dispatched = data.load(images_path)
    np.testing.assert_array_equal(dispatched.values, raw.values)
    np.testing.assert_array_equal(dispatched.labels, labels)


def test_idx_reads_big_endian_wider_types(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=np.float32)
    path = tmp_path / "floats.idx"
    path.write_bytes(_idx_bytes(values, type_code=0x0D))
    raw = data.load_idx(path)
    np.testing.assert_array_equal(raw.values, values)
    assert raw.image_shape is None and raw.max_value is None


def test_truncated_idx_raises(tmp_path):
    images = np.zeros((5, 4, 3), dtype=np.uint8)
    blob = _idx_bytes(images)
    path = tmp_path / "cut-images-idx3-ubyte"
    path.write_bytes(blob[:-7])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(path)
    path.write_bytes(blob[:10])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(path)
    gz_path = tmp_path / "cut-images-idx3-ubyte.gz"
    gz_path.write_bytes(gzip.compress(blob)[:-12])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(gz_path)


def test_idx_bad_magic_and_mismatched_labels(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(20))
    with pytest.raises(DataError, match="magic number"):
        data.load_idx(path)

    images_path, labels_path = tmp_path / "images", tmp_path / "labels"
    images_path.write_bytes(_idx_bytes(np.zeros((5, 2, 2), dtype=np.uint8)))
    labels_path.write_bytes(_idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="5 images"):
        data.load_idx(images_path, labels_path)
    with pytest.raises(DataError, match="labels file"):
        data.load_idx(labels_path)


# --- npz ------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 5, 5), dtype=np.uint8)
    labels = np.arange(6)
    single = tmp_path / "single.npz"
    np.savez(single, images)
    raw = data.load_npz(single)
    np.testing.assert_array_equal(raw.values, images.reshape(6, 25))
    assert raw.image_shape == (5, 5) and raw.max_value == 255 and raw.labels is None
    np.testing.assert_array_equal(data.load(single).values, raw.values)

    named = tmp_path / "named.npz"
    np.savez_compressed(named, x=images / 255.0, y=labels)
    raw = data.load_npz(named, key="x", labels_key="y")
    np.testing.assert_array_equal(raw.values, (images / 255.0).reshape(6, 25))
    np.testing.assert_array_equal(raw.labels, labels)
    assert raw.max_value == 1
    with pytest.raises(DataError, match=r"key=.*\['x', 'y'\]|\['x', 'y'\].*key="):
        data.load_npz(named)
    with pytest.raises(DataError, match="no array 'z'"):
        data.load_npz(named, key="z")


def test_npz_object_array_needing_pickle_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([np.zeros(3), "text"], dtype=object))
    with pytest.raises(DataError, match="pickle"):
        data.load_npz(path)


def test_npz_loader_rejects_a_plain_npy(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros((2, 2)))
    with pytest.raises(DataError, match="not a .npz"):
        data.load_npz(path)


# --- image folders -------------------------------------------------------------------------


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for cls in ("cat", "ant"):
        for i in range(3):
            pixels = rng.integers(0, 256, size=(4, 5))
            _save_png(tmp_path / cls / f"{i}.png", pixels)
            expected[(cls, i)] = pixels
    # An RGB image with equal channels converts to the same grey levels.
    rgb = np.repeat(expected[("cat", 2)][..., None], 3, axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "cat" / "2.png")

    raw = data.load_image_folder(tmp_path)
    assert raw.values.shape == (6, 20) and raw.values.dtype == np.uint8
    assert raw.image_shape == (4, 5) and raw.max_value == 255
    assert raw.class_names == ("ant", "cat")
    np.testing.assert_array_equal(raw.labels, [0, 0, 0, 1, 1, 1])
    order = [("ant", 0), ("ant", 1), ("ant", 2), ("cat", 0), ("cat", 1), ("cat", 2)]
    np.testing.assert_array_equal(raw.values, np.stack([expected[k].ravel() for k in order]))
    assert data.load(tmp_path).class_names == ("ant", "cat")


def test_image_folder_without_subfolders_is_unlabelled(tmp_path):
    for i in range(3):
        _save_png(tmp_path / f"img{i}.png", np.full((3, 3), 10 * i))
    (tmp_path / "notes.txt").write_text("not an image")
    raw = data.load_image_folder(tmp_path)
    assert raw.labels is None and raw.class_names is None
    np.testing.assert_array_equal(raw.values[:, 0], [0, 10, 20])


def test_image_folder_size_mismatch_names_the_file(tmp_path):
    for i in range(2):
        _save_png(tmp_path / "a" / f"{i}.png", np.zeros((4, 4)))
    _save_png(tmp_path / "b" / "odd.png", np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"odd\.png.*same size"):
        data.load_image_folder(tmp_path)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no .png"):
        data.load_image_folder(tmp_path)
    _save_png(tmp_path / "top.png", np.zeros((2, 2)))
    _save_png(tmp_path / "cls" / "inner.png", np.zeros((2, 2)))
    with pytest.raises(DataError, match="both at the top level and in subfolders"):
        data.load_image_folder(tmp_path)


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
