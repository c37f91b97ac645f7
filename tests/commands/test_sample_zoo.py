"""``ppl-vae sample`` on every zoo model (models/*.toml), images on the data's own range and in
colour: 8-bit means drawn on 0..255, RGB patches in colour, local autoregressive decoders
sampled pixel by pixel.

Each zoo model keeps its families, likelihood, data and network kinds but is shrunk (2 latent
dimensions, 8 hidden units, 4 channels) and trained for one step, so that the loop over the
zoo stays short; the three image models whose drawing differs run in the default suite, the
whole zoo under ``-m slow``.
"""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from ppl_vae.cli import main
from ppl_vae.reports.figures import image_layout
from ppl_vae.runs import load_run
from ppl_vae.spec import load as load_spec

ZOO = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.toml"))
IMAGE_MODELS = ("conv_gaussian_dlogistic", "conv_patches_categorical", "vlae_local")
NUM_SAMPLES, SCALE, PAD = 4, 2, 2
ROUNDING = 0.5 / 255 + 1e-6  # the PNG's 8-bit rounding; float32 decoding is far finer


def _shrunk(path: Path):
    spec = load_spec(path)

    def small(net):
        return None if net is None else dataclasses.replace(net, hidden=(8,) if net.hidden else (),
                                   channels=tuple(4 for _ in net.channels),
                                   masked_channels=4 if net.masked_layers else
                                   net.masked_channels)

    return spec.replace(latent_dim=2, encoder=small(spec.encoder), decoder=small(spec.decoder))


def _train_and_sample(tmp_path: Path, path: Path) -> Path:
    spec = _shrunk(path)
    spec_path = tmp_path / f"{spec.name}.toml"
    spec_path.write_text(tomli_w.dumps(spec.to_dict()))
    run_dir = tmp_path / spec.name
    assert main(["--threads", "1", "train", str(spec_path), "--steps", "1", "--batch-size", "8",
                 "--out", str(run_dir), "--quiet"]) == 0
    assert main(["--threads", "1", "sample", str(run_dir), "--num-samples", str(NUM_SAMPLES),
                 "--num-reconstructions", "8", "--num-codes", "10"]) == 0
    return run_dir


def _cells(png: Path, count: int, columns: int, layout: tuple[int, int, int]) -> np.ndarray:
    """The grid's first ``count`` images ``(count, H, W, C)`` in [0, 1], as displayed: grey
    ink dark (value 1 - pixel), RGB in its own colours."""
    channels, height, width = layout
    grid = np.asarray(Image.open(io.BytesIO(png.read_bytes())), dtype=np.float64) / 255.0
    grid = 1.0 - grid[..., None] if grid.ndim == 2 else grid
    assert grid.shape[-1] == channels
    cells = []
    for r, c in (divmod(k, columns) for k in range(count)):
        top, left = SCALE * (PAD + r * (height + PAD)), SCALE * (PAD + c * (width + PAD))
        cells.append(grid[top:top + SCALE * height:SCALE, left:left + SCALE * width:SCALE])
    return np.stack(cells)


def _check_samples(run_dir: Path) -> None:
    """samples.png holds the model's own samples, mapped from the likelihood's range; a
    conditional model's, one column per class in whole rows."""
    run_ = load_run(run_dir)
    spec = run_.spec
    layout = image_layout(spec.data_dim, spec.data_shape)
    count, columns = NUM_SAMPLES, 2
    if spec.condition is not None:
        columns = spec.condition.classes
        count = columns * -(-NUM_SAMPLES // columns)
    shown = _cells(run_dir / "samples.png", count, columns, layout)
    low, high = spec.likelihood.data_range or (0.0, 1.0)
    expected = (np.asarray(run_.vae.sample(count, seed=0), dtype=np.float64) - low) / (
        high - low)
    expected = expected.reshape(count, *layout).transpose(0, 2, 3, 1)
    assert np.abs(shown - np.clip(expected, 0.0, 1.0)).max() <= ROUNDING


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_sample_draws_image_models_on_their_range_and_in_colour(tmp_path, name):
    run_dir = _train_and_sample(tmp_path, ZOO[[p.stem for p in ZOO].index(name)])
    _check_samples(run_dir)
    run_ = load_run(run_dir)
    layout = image_layout(run_.spec.data_dim, run_.spec.data_shape)
    originals = _cells(run_dir / "reconstructions.png", 8, 8, layout)  # first row: the data
    data = run_.evaluation_data("test", max_points=8, seed=0)
    low, high = run_.spec.likelihood.data_range or (0.0, 1.0)
    expected = ((data.x[:8] - low) / (high - low)).reshape(8, *layout).transpose(0, 2, 3, 1)
    assert np.abs(originals - expected).max() <= ROUNDING
    if name == "conv_gaussian_dlogistic":
        # 8-bit MNIST drawn on 0..255: the strokes are full ink, the background empty, most
        # pixels neither clipped to ink (what a [0, 1] scale made of means up to 255) ...
        assert originals.max() == 1.0 and originals.min() == 0.0
        samples = _cells(run_dir / "samples.png", NUM_SAMPLES, 2, layout)
        assert np.mean(samples >= 1.0 - ROUNDING) < 0.5
        assert samples.max() > 1 / 255  # ... nor all pale
    if name == "conv_patches_categorical":
        # photographs in colour: the channels differ by more than rounding
        assert np.abs(originals[..., 0] - originals[..., 2]).mean() > 10 / 255
    if name == "vlae_local":  # pixel-by-pixel draws, not means
        assert set(np.unique(_cells(run_dir / "samples.png", NUM_SAMPLES, 2, layout))) == {0.0,
                                                                                          1.0}
        recon = _cells(run_dir / "reconstructions.png", 16, 8, layout)[8:]
        assert set(np.unique(recon)) <= {0.0, 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in ZOO if p.stem not in IMAGE_MODELS],
                         ids=lambda p: p.stem)
def test_sample_works_on_every_zoo_model(tmp_path, path):
    _check_samples(_train_and_sample(tmp_path, path))
