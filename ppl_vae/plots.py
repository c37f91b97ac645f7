"""Figures of trained models: image grids (samples, reconstructions) and training curves.

Grids are plain NumPy arrays written as PNG with Pillow (no figure machinery, exact pixels);
training curves are matplotlib figures drawn from the tidy history that
:func:`ppl_vae.train.fit` returns.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.io import atomic_write_bytes


def infer_image_shape(data_dim: int, image_shape: tuple[int, ...] | None = None) -> tuple[int, int]:
    """``(height, width)`` to draw a datapoint of ``data_dim`` values.

    The given ``image_shape`` (its last two dimensions) if any, else a square when ``data_dim``
    is a perfect square, else one row.
    """
    if image_shape is not None and len(image_shape) >= 2:
        return int(image_shape[-2]), int(image_shape[-1])
    side = math.isqrt(data_dim)
    return (side, side) if side * side == data_dim else (1, data_dim)


def image_grid(images: Any, image_shape: tuple[int, ...] | None = None, *,
               num_columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile ``(N, D)`` images (values in [0, 1]) into one ``(H, W)`` float array.

    Images fill rows of ``num_columns`` (default: a near-square grid) framed by ``padding``
    pixels of value 1 (ink, so :func:`grid_png` draws the frames dark); unused cells are
    filled with 1 too.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, D) with N >= 1, got {images.shape}")
    num = images.shape[0]
    flat = images.reshape(num, -1)
    height, width = infer_image_shape(flat.shape[1], image_shape)
    if height * width != flat.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not hold {flat.shape[1]} values")
    cols = num_columns or math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    grid = np.ones((rows * (height + padding) + padding, cols * (width + padding) + padding))
    for k, image in enumerate(np.clip(flat, 0.0, 1.0)):
        r, c = divmod(k, cols)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = image.reshape(height, width)
    return grid


def grid_png(grid: np.ndarray, scale: int = 2) -> bytes:
    """PNG bytes of a grid (values in [0, 1], drawn dark on light), upscaled by ``scale``."""
    from PIL import Image

    pixels = np.round((1.0 - np.clip(grid, 0.0, 1.0)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)  # 2-D uint8: greyscale
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_image_grid(path: str | Path, images: Any, image_shape: tuple[int, ...] | None = None,
                    *, num_columns: int | None = None, scale: int = 2) -> Path:
    """Write ``images`` as one PNG grid (atomically); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, grid_png(image_grid(images, image_shape, num_columns=num_columns),
                                      scale=scale))
    return path


def save_figure(path: str | Path, fig: Any, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it; returns the path."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def interleave_rows(originals: Any, reconstructions: Any, num_columns: int) -> np.ndarray:
    """Order images so that a grid of ``num_columns`` shows a row of originals above the row
    of their reconstructions, pair after pair (``N`` must be a multiple of ``num_columns``)."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions "
                         f"{reconstructions.shape} must have the same shape")
    if len(originals) % num_columns:
        raise ValueError(f"{len(originals)} images do not fill rows of {num_columns}")
    rows = len(originals) // num_columns
    pairs = np.stack([originals.reshape(rows, num_columns, -1),
                      reconstructions.reshape(rows, num_columns, -1)], axis=1)
    return pairs.reshape(2 * len(originals), -1)


def training_curves(history: pd.DataFrame, title: str = "") -> Any:
    """Matplotlib figure of the loss (−ELBO per datapoint, nats): the training loss averaged
    per epoch and the validation loss at each evaluation, against the step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    train = history[history["split"] == "train"]
    if len(train):
        per_epoch = train.groupby("epoch").agg(step=("step", "max"), loss=("loss", "mean"))
        ax.plot(per_epoch["step"], per_epoch["loss"], label="train (epoch mean)")
    valid = history[history["split"] == "valid"]
    if len(valid):
        ax.plot(valid["step"], valid["loss"], marker="o", markersize=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (−ELBO, nats per datapoint)")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
