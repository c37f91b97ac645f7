"""Figures on their own: image grids on the data's range and in colour, readable axes and keys,
and the tables the pages shape from stored ones."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ppl_vae.reports import figures
from ppl_vae.reports.tables import last_losses


def test_eight_bit_images_use_their_dynamic_range():
    """Means on 0..255 drawn on (0, 255): each pixel is value / 255 exactly, where a [0, 1]
    scale clipped nearly all of them to full ink."""
    values = np.random.default_rng(0).uniform(0, 238, (4, 784))
    grid = figures.image_grid(values, (1, 28, 28), num_columns=2, value_range=(0.0, 255.0))
    np.testing.assert_allclose(grid[2:30, 2:30], values[0].reshape(28, 28) / 255, rtol=1e-12)
    assert grid[2:30, 2:30].max() > 0.5 and grid[2:30, 2:30].min() < 1 / 255
    clipped = figures.image_grid(values, (1, 28, 28), num_columns=2)  # the old [0, 1] scale
    assert np.mean(clipped[2:30, 2:30] == 1.0) > 0.99
    assert figures.display_range((0.0, 255.0)) == (0.0, 255.0)
    assert figures.display_range(None) == (0.0, 1.0)  # Gaussian data, scaled to [0, 1]


def test_rgb_grids_are_in_colour_with_channels_last():
    images = np.zeros((3, 3, 8, 8))  # (N, C, H, W), as the patches store them
    images[0, 0], images[1, 1], images[2, 2] = 255, 255, 255  # red, green, blue
    grid = figures.image_grid(images.reshape(3, -1), (3, 8, 8), num_columns=2,
                              value_range=(0.0, 255.0))
    assert grid.shape == (2 * 10 + 2, 2 * 10 + 2, 3)
    np.testing.assert_array_equal(grid[2:10, 2:10], np.broadcast_to([1.0, 0.0, 0.0], (8, 8, 3)))
    np.testing.assert_array_equal(grid[2:10, 12:20, 1], 1.0)
    np.testing.assert_array_equal(grid[12:20, 2:10], np.broadcast_to([0.0, 0.0, 1.0], (8, 8, 3)))
    np.testing.assert_array_equal(grid[12:20, 12:20], 1.0)  # the unused cell: white
    np.testing.assert_array_equal(grid[:2], 0.0)  # frames: black
    png = Image.open(io.BytesIO(figures.grid_png(grid, scale=1)))
    assert png.mode == "RGB"
    pixels = np.asarray(png)
    assert tuple(pixels[5, 5]) == (255, 0, 0) and tuple(pixels[5, 15]) == (0, 255, 0)
    with pytest.raises(ValueError, match="does not hold 100 values"):
        figures.image_grid(np.zeros((2, 100)), (3, 8, 8))
    with pytest.raises(ValueError, match="high > low"):
        figures.image_grid(np.zeros((2, 64)), value_range=(1.0, 1.0))


def test_unused_grey_cells_are_background_not_ink():
    grid = figures.image_grid(np.ones((3, 4)), (2, 2), num_columns=2, padding=1)
    np.testing.assert_array_equal(grid[1:3, 1:3], 1.0)  # an image of full ink
    np.testing.assert_array_equal(grid[4:6, 4:6], 0.0)  # the fourth cell, unused
    assert grid[0].tolist() == [1.0] * 7  # frames stay ink


def test_dimension_ticks_are_integers_and_keys_sit_outside_the_data():
    dims = pd.DataFrame({"dim": np.arange(3), "kl": [0.5, 2.0, 0.1]})
    fig = figures.per_dimension_bars(dims)
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if -0.5 <= t <= 2.5]
    assert ticks and all(float(t).is_integer() for t in ticks)
    gaps = pd.DataFrame({"datapoint": [0, 1], "gap_approximation": [1.0, 2.0],
                         "gap_amortization": [0.5, 0.5], "gap_approximation_se": [0.1, 0.1],
                         "gap_amortization_se": [0.1, 0.1]})
    fig = figures.gap_bars(gaps)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 > ax.get_window_extent().x1  # right of the panel: covers no bar


def _groups():
    rows = []
    for estimator, scale in (("reparam", 1.0), ("score", 1.0), ("stl", 0.5)):
        for k in (1, 3):
            rows.append({"group": "decoder", "estimator": estimator, "particles": k,
                         "variance": scale * 10.0 / k, "variance_se": scale * 1.0 / k})
    return pd.DataFrame(rows)


def test_variance_plot_has_error_bars_and_names_coinciding_estimators():
    fig = figures.variance_vs_particles(_groups(), "variance", "total variance")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["reparam", "score (= reparam: the same values)", "stl"]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 3
    segments = bars[0].lines[2][0].get_segments()  # reparam's ±2 se at K = 1 and K = 3
    np.testing.assert_allclose([s[:, 1] for s in segments], [[8.0, 12.0], [10 / 3 - 2 / 3,
                                                                            10 / 3 + 2 / 3]])
    assert ax.get_ylabel() == "total variance (±2 se)"


def test_loss_curves_use_a_log_axis_and_every_logged_point():
    steps = np.arange(0, 101)
    loss = 100 + 450 * np.exp(-steps / 3.0)  # a spike at step 0, then a plateau
    history = pd.concat([
        pd.DataFrame({"step": steps[1:], "epoch": (steps[1:] - 1) // 10, "split": "train",
                      "loss": loss[1:], "wall_time": steps[1:] * 0.1}),
        pd.DataFrame({"step": steps[::20], "epoch": 0, "split": "valid",
                      "loss": loss[::20] + 13, "wall_time": 0.0})], ignore_index=True)
    fig = figures.training_curves(history)
    assert fig.axes[0].get_yscale() == "log"
    cells = pd.concat([history.assign(spec=spec, seed=seed)
                       for spec in ("a", "b") for seed in (0, 1)], ignore_index=True)
    fig = figures.grid_learning_curves(cells)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    train_lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 100]
    assert len(train_lines) == 4  # every logged training step of each of the 4 cells
    keys = [t.get_text() for t in fig.legends[0].get_texts()]
    assert keys == ["a", "b", "seed 0", "seed 1"]


def test_last_losses_average_the_last_epoch_as_the_command_line_prints():
    history = pd.DataFrame({"step": [0, 1, 2, 3, 4, 4], "epoch": [0, 0, 0, 1, 1, 1],
                            "split": ["valid", "train", "train", "train", "train", "valid"],
                            "loss": [9.0, 8.0, 7.0, 6.0, 2.0, 5.0],
                            "wall_time": [0.0, 1.0, 2.0, 3.0, 4.0, 4.5]})
    table = last_losses(history).set_index("split")
    assert table.loc["train", "loss"] == 4.0  # (6 + 2) / 2, not the last minibatch's 2
    assert table.loc["valid", "loss"] == 5.0 and table.loc["train", "step"] == 4


def test_class_grids_fill_whole_rows_one_column_per_class():
    assert figures.class_columns(64, 10) == (70, 10)  # 7 rows of 10 classes, no empty cell
    assert figures.class_columns(20, 10) == (20, 10)
    assert figures.class_columns(64, None) == (64, None)
