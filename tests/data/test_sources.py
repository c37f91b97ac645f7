"""Tests for :mod:`ppl_vae.data.sources`: built-in datasets, IDX, npz and image-folder loaders."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from ppl_vae import data
from ppl_vae.data import DataError


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _save_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


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


def test_idx_with_zero_images_is_refused(tmp_path):
    path = tmp_path / "empty-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((0, 28, 28), dtype=np.uint8)))
    with pytest.raises(DataError, match=r"declares 0 items \(shape \(0, 28, 28\)\)"):
        data.load(path)


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
    raw = data.load_npz(named, images_key="x", labels_key="y")
    np.testing.assert_array_equal(raw.values, (images / 255.0).reshape(6, 25))
    np.testing.assert_array_equal(raw.labels, labels)
    assert raw.max_value == 1
    with pytest.raises(DataError, match=r"no array 'z' \(--images-key\)"):
        data.load_npz(named, images_key="z")


def test_npz_default_keys_are_images_and_labels_then_x_and_y(tmp_path):
    rng = np.random.default_rng(0)
    images, other = (rng.integers(0, 256, size=(6, 4), dtype=np.uint8) for _ in range(2))
    labels = np.arange(6)
    path = tmp_path / "both.npz"
    np.savez(path, x=other, images=images, labels=labels, y=labels[::-1])
    raw = data.load(path)  # images before x, labels before y
    np.testing.assert_array_equal(raw.values, images)
    np.testing.assert_array_equal(raw.labels, labels)
    np.savez(path, x=images, y=labels)
    np.testing.assert_array_equal(data.load(path).labels, labels)
    np.savez(path, x=images, y=labels, labels=images[:, :2])
    raw = data.load(path, images_key="labels")  # the labels are never the images' array
    np.testing.assert_array_equal(raw.values, images[:, :2])
    np.testing.assert_array_equal(raw.labels, labels)


def test_npz_without_a_default_key_names_the_flags(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, a=np.zeros((3, 4)), b=np.arange(3))
    with pytest.raises(DataError, match=r"\['a', 'b'\].*--images-key NAME.*--labels-key NAME"):
        data.load(path)
    raw = data.load(path, images_key="a", labels_key="b")
    np.testing.assert_array_equal(raw.labels, np.arange(3))
    with pytest.raises(DataError, match=r"no array 'c' \(--labels-key\)"):
        data.load(path, images_key="a", labels_key="c")
    with pytest.raises(DataError, match="name arrays of a .npz file.*'digits'"):
        data.load("digits", images_key="a")


def test_npz_object_array_needing_pickle_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([np.zeros(3), "text"], dtype=object))
    with pytest.raises(DataError, match="pickle"):
        data.load_npz(path)


@pytest.mark.parametrize("damage", ["truncated", "bad CRC", "bad deflate stream", "not zip"])
def test_corrupt_npz_is_a_data_error_naming_the_file(damage, tmp_path):
    """Each damage used to escape as BadZipFile or zlib.error."""
    x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    path = tmp_path / "x.npz"
    (np.savez_compressed if damage == "bad deflate stream" else np.savez)(path, x=x)
    blob = bytearray(path.read_bytes())
    if damage == "truncated":
        blob = blob[:len(blob) // 2]
    elif damage == "not zip":
        blob = bytearray(b"hello world")
    else:  # inside the stored / deflated member, past its local header
        blob[200:260] = b"\xff" * 60
    path.write_bytes(bytes(blob))
    words = "is not a .npz archive" if damage == "not zip" else "corrupt or truncated .npz"
    with pytest.raises(DataError, match=words) as caught:
        data.load(path)
    assert str(path) in str(caught.value)


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
