"""Every figure of the package: image grids, training curves, the diagnostics' plots and the
gradient-variance study's plots.

Figures render stored tables (a training history, a diagnosis, a study's tidy tables);
nothing is recomputed here. Image grids are plain NumPy arrays written as PNG with Pillow
(exact pixels); plots are matplotlib figures (Agg); trace, rank and pair plots are ArviZ's.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.diagnostics.psis import KHAT_GOOD, KHAT_OK, khat_threshold
from ppl_vae.io import atomic_write_bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _arviz_plotting() -> Iterator[Any]:
    """ArviZ 0.23's matplotlib backend with matplotlib >= 3.11: yields ``arviz``.

    ArviZ 0.23 passes a dict as ``alias_mapping`` to ``normalize_kwargs``, which matplotlib
    3.11 deprecates; the warning concerns ArviZ's code, not ours, so it is silenced here
    (and only here).
    """
    _pyplot()
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        yield az


def _legend_outside(ax: Any, **kwargs: Any) -> Any:
    """The key to the right of ``ax``, outside the data, so that it covers no bar or line
    (``save_figure`` and the report writer save with ``bbox_inches="tight"``)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize="small", **kwargs)


def _loss_axis(ax: Any, losses: Any) -> None:
    """A log y axis for positive losses, so that the early spike (the loss at step 0 is often
    several times the final one) leaves the late train/valid gap visible; losses of either
    sign (continuous likelihoods) keep a linear axis whose top clips the first tenth of the
    points, the rest drawn in full."""
    values = np.asarray(losses, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    if values.min() > 0:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, values)
        return
    rest = values[len(values) // 10:]
    low, high = rest.min(), rest.max()
    if high < values.max():
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))


def _plain_log_ticks(axis: Any, values: Any) -> None:
    """On a log axis spanning less than a decade, a few plain numbers (44, 46, 48) instead of
    matplotlib's minor labels in scientific notation (4.4 × 10¹)."""
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() < 10 * values.min():
        axis.set_major_locator(MaxNLocator(5))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())


def _integer_ticks(axis: Any) -> None:
    """Integer tick labels (latent dimensions, counts)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


# --------------------------------------------------------------------------- models and runs


def image_layout(data_dim: int, image_shape: tuple[int, ...] | None = None
                 ) -> tuple[int, int, int]:
    """``(channels, height, width)`` to draw a datapoint of ``data_dim`` values.

    ``image_shape`` ``(C, H, W)`` (channels first, as the data sources and the zoo's
    ``data_shape`` store images; C = 1 grey, C = 3 RGB) or ``(H, W)`` if given, else a grey
    square when ``data_dim`` is a perfect square, else one grey row.
    """
    if image_shape is not None and len(image_shape) == 3 and image_shape[0] in (1, 3):
        return int(image_shape[0]), int(image_shape[1]), int(image_shape[2])
    if image_shape is not None and len(image_shape) >= 2:
        return 1, int(image_shape[-2]), int(image_shape[-1])
    side = math.isqrt(data_dim)
    return (1, side, side) if side * side == data_dim else (1, 1, data_dim)


def image_grid(images: Any, image_shape: tuple[int, ...] | None = None, *,
               num_columns: int | None = None, padding: int = 2,
               value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Tile ``(N, D)`` images into one ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB) array in [0, 1].

    Values are mapped from ``value_range`` (the data's own range: ``(0, 255)`` for 8-bit
    likelihoods, see :func:`display_range`) onto [0, 1] and clipped. Images fill rows of
    ``num_columns`` (default: a near-square grid) framed by ``padding`` pixels drawn dark
    (grey: 1, ink, which :func:`grid_png` draws dark; RGB: black, not the mid grey of an
    untrained model's means); unused cells stay background (grey: 0; RGB: white).
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, D) with N >= 1, got {images.shape}")
    num = images.shape[0]
    flat = images.reshape(num, -1)
    channels, height, width = image_layout(flat.shape[1], image_shape)
    if channels * height * width != flat.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not hold {flat.shape[1]} values")
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    cells = np.clip((flat - low) / (high - low), 0.0, 1.0).reshape(num, channels, height, width)
    cells = cells.transpose(0, 2, 3, 1)  # channels last, as imshow and PIL take them
    cols = num_columns or math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    grid = np.full((rows * (height + padding) + padding, cols * (width + padding) + padding,
                    channels), 1.0 if channels == 1 else 0.0)
    for k, image in enumerate(cells):
        r, c = divmod(k, cols)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = image
    for k in range(num, rows * cols):  # unused cells: background, not ink
        r, c = divmod(k, cols)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = 0.0 if channels == 1 else 1.0
    return grid[..., 0] if channels == 1 else grid


def class_columns(num_samples: int, classes: int | None) -> tuple[int, int | None]:
    """``(count, num_columns)`` of a sample grid with one column per class (the classes in
    turn, as a conditional ``vae.sample`` draws them): ``num_samples`` rounded up to whole
    rows; without classes ``(num_samples, None)``, a near-square grid."""
    if classes is None:
        return num_samples, None
    return classes * math.ceil(num_samples / classes), classes


def display_range(data_range: tuple[float, float] | None) -> tuple[float, float]:
    """The range images are drawn on: a likelihood's ``data_range`` (8-bit families:
    ``(0, 255)``), or [0, 1] where it has none (Gaussian data, scaled to [0, 1])."""
    return (0.0, 1.0) if data_range is None else (float(data_range[0]), float(data_range[1]))


def grid_png(grid: np.ndarray, scale: int = 2) -> bytes:
    """PNG bytes of a grid in [0, 1] (:func:`image_grid`), upscaled by ``scale``: a 2-D grid in
    greyscale drawn dark on light (1 is ink), an ``(H, W, 3)`` grid in its own colours."""
    from PIL import Image

    grid = np.clip(grid, 0.0, 1.0)
    pixels = np.round((1.0 - grid if grid.ndim == 2 else grid) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)  # 2-D: greyscale; (H, W, 3): RGB
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_image_grid(path: str | Path, images: Any, image_shape: tuple[int, ...] | None = None,
                    *, num_columns: int | None = None, scale: int = 2,
                    value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Write ``images`` as one PNG grid (atomically); returns the path. ``value_range``: the
    data's range (:func:`display_range`)."""
    path = Path(path)
    grid = image_grid(images, image_shape, num_columns=num_columns, value_range=value_range)
    atomic_write_bytes(path, grid_png(grid, scale=scale))
    return path


def save_figure(path: str | Path, fig: Any, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it; returns the path."""
    plt = _pyplot()
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
    """The loss (−objective per datapoint, nats) against the step: the training loss averaged
    per epoch and the validation loss at each evaluation (the tidy history of
    :func:`ppl_vae.training.fit`; a history without ``epoch`` is drawn per step), with a star
    at the validation evaluation whose parameters the run keeps (its ``selected`` column)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    split = history["split"] if "split" in history else pd.Series("train", history.index)
    train = history[split == "train"]
    per_epoch = train
    if len(train):
        per_epoch = (train.groupby("epoch").agg(step=("step", "max"), loss=("loss", "mean"))
                     if "epoch" in train else train)
        ax.plot(per_epoch["step"], per_epoch["loss"],
                label="train (epoch mean)" if "epoch" in train else "train")
    valid = history[split == "valid"]
    if len(valid):
        ax.plot(valid["step"], valid["loss"], marker="o", markersize=3, label="validation")
    kept = valid[valid["selected"]] if "selected" in valid else valid.iloc[:0]
    if len(kept):
        ax.plot(kept["step"], kept["loss"], linestyle="none", marker="*", markersize=12,
                color="black", label=f"kept: step {int(kept['step'].iloc[0])}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (−ELBO, nats per datapoint)")
    _loss_axis(ax, pd.concat([per_epoch["loss"], valid["loss"]]))
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- diagnostics


"""Pair plots show at most this many latent dimensions (the largest guide-vs-MCMC shifts)."""


def khat_histogram(khat: Any, num_samples: int) -> Any:
    """Histogram of k̂ with the 0.5 / 0.7 thresholds and the S-dependent one."""
    plt = _pyplot()
    khat = np.asarray(khat, dtype=np.float64)
    finite = khat[np.isfinite(khat)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(finite, bins=30, color="0.5")
    threshold = khat_threshold(num_samples)
    for value, style, label in ((KHAT_GOOD, ":", "0.5 good"), (KHAT_OK, "--", "0.7 unreliable"),
                                (threshold, "-", f"min(1-1/log10 S, 0.7) = {threshold:.2f}")):
        ax.axvline(value, color="C3", linestyle=style, label=label)
    constant = int((khat == -np.inf).sum())
    ax.set_xlabel("Pareto k̂ of log p(x,z) − log q(z|x)")
    ax.set_ylabel("datapoints")
    ax.set_title(f"PSIS k̂, S = {num_samples} draws per datapoint"
                 + (f" ({constant} with constant weights, k̂ = −inf)" if constant else ""))
    _integer_ticks(ax.yaxis)
    _legend_outside(ax)
    return fig


def _code_dims(idata: Any) -> tuple[str, str]:
    """The names of the datapoint and latent dimensions of ``z`` in an InferenceData."""
    datapoint, latent = idata.posterior["z"].dims[2:]
    return datapoint, latent


def trace_plot(reference_idata: Any, datapoint: Any, dims: Any) -> Any:
    """ArviZ trace plot of the MCMC reference of z for one datapoint and some dimensions
    (a row per dimension, its title clear of the row above under constrained layout)."""
    point_dim, latent_dim = _code_dims(reference_idata)
    with _arviz_plotting() as az:
        axes = az.plot_trace(reference_idata, var_names=["z"], compact=False,
                             figsize=(10, 2.8 * len(dims)),
                             coords={point_dim: [datapoint], latent_dim: list(dims)},
                             backend_kwargs={"layout": "constrained"})
    return np.asarray(axes).ravel()[0].figure


def rank_plot(reference_idata: Any, datapoint: Any) -> Any:
    """ArviZ rank plot (per-chain rank histograms) of z for one datapoint, two panels a row
    so that its text stays legible at page width."""
    point_dim, latent_dim = _code_dims(reference_idata)
    dims = reference_idata.posterior.sizes[latent_dim]
    rows = math.ceil(dims / 2)
    with _arviz_plotting() as az:
        axes = az.plot_rank(reference_idata, var_names=["z"], coords={point_dim: [datapoint]},
                            grid=(rows, min(dims, 2)), figsize=(9, 3.0 * rows),
                            backend_kwargs={"layout": "constrained"})
    return np.asarray(axes).ravel()[0].figure


def pair_plot(guide_idata: Any, reference_idata: Any, datapoint: Any, dims: Any,
              max_draws: int = 1000) -> Any:
    """Guide draws over MCMC draws of z for one datapoint and the dimensions ``dims``
    (ArviZ pair plot), the reference thinned to about ``max_draws`` draws; the key sits in
    the empty upper corner of the lower-triangular grid, clear of the points."""
    plt = _pyplot()
    point_dim, latent_dim = _code_dims(reference_idata)
    post = reference_idata.posterior
    coords = {point_dim: [datapoint], latent_dim: list(dims)}
    ref_chains = post["z"].sel({point_dim: [datapoint]})
    thin = max(1, ref_chains.sizes["chain"] * ref_chains.sizes["draw"] // max_draws)
    side = min(9.0, 2.6 * max(len(dims) - 1, 1) + 1.0)
    with _arviz_plotting() as az:
        ref_idata = az.InferenceData(posterior=post.isel(draw=slice(None, None, thin)))
        style = {"alpha": 0.5, "s": 16, "edgecolors": "none"}
        ax = az.plot_pair(ref_idata, var_names=["z"], coords=coords, kind="scatter",
                          figsize=(side, side), textsize=11,
                          scatter_kwargs={"color": "C0", **style})
        ax = az.plot_pair(guide_idata, var_names=["z"], coords=coords, kind="scatter", ax=ax,
                          textsize=11, scatter_kwargs={"color": "C1", **style})
    fig = np.asarray(ax).ravel()[0].figure
    handles = [plt.Line2D([], [], marker="o", markersize=8, linestyle="", color=c, label=label)
               for c, label in (("C0", "MCMC p(z|x)"), ("C1", "guide q(z|x)"))]
    fig.legend(handles=handles, loc="upper right", fontsize="large", frameon=False)
    fig.suptitle(f"datapoint {datapoint}: guide vs MCMC", fontsize="x-large")
    return fig


def gap_bars(gaps: pd.DataFrame) -> Any:
    """Stacked bars per datapoint: approximation gap + amortization gap = log p(x) − ELBO."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(gaps) + 2), 3.5))
    pos = np.arange(len(gaps))
    approx, amort = gaps["gap_approximation"].to_numpy(), gaps["gap_amortization"].to_numpy()
    ax.bar(pos, approx, color="C0", label="approximation gap",
           yerr=2 * gaps["gap_approximation_se"], capsize=3)
    ax.bar(pos, amort, bottom=approx, color="C1", label="amortization gap",
           yerr=2 * gaps["gap_amortization_se"], capsize=3)
    ax.set_xticks(pos, [str(d) for d in gaps["datapoint"]])
    ax.set_xlabel("datapoint")
    ax.set_ylabel("nats")
    ax.set_title("log p(x) − ELBO = approximation + amortization gap (±2 se)")
    _legend_outside(ax)
    return fig


def collapse_bars(collapse: pd.DataFrame) -> Any:
    """KL per latent dimension (bars) coloured by active / inactive unit."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(collapse) + 2), 3.5))
    colors = np.where(collapse["active"], "C0", "0.7")
    values = collapse["kl"] if collapse["kl"].notna().any() else collapse["activity"]
    ax.bar(collapse["latent_dim"], values, color=colors)
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL(q ‖ p) per dim, nats" if collapse["kl"].notna().any()
                  else "Var_x E_q[z]")
    ax.set_title(f"{int(collapse['active'].sum())} active units (blue), "
                 f"{int(collapse['collapsed'].sum())} collapsed")
    return fig


# --------------------------------------------------------------------------- benchmarks


def scaling_plot(table: pd.DataFrame) -> Any:
    """``ppl-vae bench``'s scaling table: relative cost against relative size, a panel per
    factor, a line per backend, the dotted diagonal marking linear growth."""
    factors = list(dict.fromkeys(table["factor"]))
    fig = _figure(3.2 * len(factors), 3.0)
    axes = fig.subplots(1, len(factors), squeeze=False)[0]
    for ax, factor in zip(axes, factors, strict=True):
        sub = table[table["factor"] == factor]
        for backend, line in sub.groupby("backend", sort=False):
            ax.plot(line["value"], line["seconds"], marker="o", label=backend)
        lo = sub.groupby("backend")["seconds"].first().min()
        values = np.sort(sub["value"].unique())
        ax.plot(values, lo * values / values[0], ":", color="grey", label="linear")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(factor)
        ax.set_ylabel(sub["unit"].iloc[0])
    _legend_outside(axes[-1])
    return fig


def bdmc_bounds(table: pd.DataFrame) -> Any:
    """``ppl-vae evaluate --bdmc``'s table on the same simulated data. Left: the means of the
    forward (lower) and reverse (upper) AIS bounds against T and of IS against K (no error
    bars: the spread of log p(x) over datapoints would swamp them). Right: the paired
    differences with their standard errors, the gap upper − lower against T and upper (at
    the largest T) − IS against K."""
    fig = _figure(8.4, 3.2)
    means, paired = fig.subplots(1, 2)
    for quantity, label, marker in (("upper", "upper bound: reverse AIS, T", "v"),
                                    ("lower", "lower bound: forward AIS, T", "^"),
                                    ("is", "IS with the encoder, K", "o")):
        rows = table[table["quantity"] == quantity].sort_values("size")
        if not rows.empty:
            means.plot(rows["size"], rows["mean"], marker=marker, label=label)
    means.set_ylabel("mean log p(x) (nats)")
    for quantity, label in (("gap", "upper − lower, T"),
                            ("upper_minus_is", "upper (largest T) − IS, K")):
        rows = table[table["quantity"] == quantity].sort_values("size")
        if not rows.empty:
            paired.errorbar(rows["size"], rows["mean"], yerr=rows["stderr"], marker="o",
                            capsize=3, label=label)
    paired.axhline(0.0, color="grey", linestyle=":")
    paired.set_ylabel("paired difference (nats)")
    for ax in (means, paired):
        ax.set_xscale("log")
        ax.set_xlabel("T (AIS temperatures) or K (IS particles)")
        ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- gradient variance


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _group_axes(df: pd.DataFrame, height: float) -> tuple[list[str], Any, Any]:
    """One panel per parameter group of a study table, side by side."""
    groups = list(dict.fromkeys(df["group"]))
    fig = _figure(3.6 * len(groups), height)
    return groups, fig, fig.subplots(1, len(groups), squeeze=False)[0]


def variance_vs_particles(df: pd.DataFrame, column: str, title: str) -> Any:
    """``column`` (total variance, median SNR) against K per group, a line per estimator."""
    from matplotlib.ticker import NullFormatter

    groups, fig, axes = _group_axes(df, 4.4)
    for ax, group in zip(axes, groups, strict=True):
        sub = df[df["group"] == group]
        drawn: list[tuple[str, np.ndarray, np.ndarray]] = []
        for k, (name, line) in enumerate(sub.groupby("estimator", sort=False)):
            line = line.sort_values("particles")
            ks, values = line["particles"].to_numpy(), line[column].to_numpy(dtype=np.float64)
            same = [other for other, ks_o, v_o in drawn if np.array_equal(ks, ks_o)
                    and np.allclose(values, v_o, rtol=1e-9, atol=0.0)]
            drawn.append((name, ks, values))
            label = f"{name} (= {', '.join(same)}: the same values)" if same else name
            style = {"marker": "o", "color": f"C{k % 10}", "label": label,
                     "linestyle": "--" if same else "-", "markerfacecolor": "none" if same
                     else None}
            se_column = f"{column}_se"
            if se_column in line and line[se_column].notna().any():
                se = 2 * line[se_column].to_numpy(dtype=np.float64)
                # ±2 se, the lower arm stopped short of zero on the log axis
                ax.errorbar(ks, values, yerr=[np.minimum(se, 0.95 * values), se], capsize=3,
                            **style)
            else:
                ax.plot(ks, values, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, sub[column])
        ks = sorted(sub["particles"].unique())
        ax.set_xticks(ks, labels=[str(k) for k in ks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(group)
        ax.set_xlabel("particles K")
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22),
                  ncols=2)  # below the panel: its notes of coinciding estimators are its own
    axes[0].set_ylabel(title + (" (±2 se)" if f"{column}_se" in df else ""))
    return fig


def snr_boxplots(df: pd.DataFrame) -> Any:
    """Quantiles of the coordinates' SNR per estimator, a panel per group."""
    groups, fig, axes = _group_axes(df, 3.4)
    for ax, group in zip(axes, groups, strict=True):
        sub = df[df["group"] == group]
        stats = [{"label": row.estimator, "med": row.snr, "q1": row.snr_q25, "q3": row.snr_q75,
                  "whislo": row.snr_q05, "whishi": row.snr_q95, "fliers": []}
                 for row in sub.itertuples()
                 if np.all(np.isfinite([row.snr_q05, row.snr_q95]))]  # exact gradients: inf
        if stats:
            ax.bxp(stats, showfliers=False)
        ax.set_yscale("log")
        ax.set_title(group)
        ax.tick_params(axis="x", labelrotation=60)
    axes[0].set_ylabel("coordinate SNR (5/25/50/75/95%)")
    return fig


def estimator_training_curves(df: pd.DataFrame) -> Any:
    """Loss against steps and wall time, a line per estimator (the study's training runs)."""
    fig = _figure(9, 3.4)
    axes = fig.subplots(1, 2)
    split = "valid" if (df["split"] == "valid").any() else "train"
    shown = df[df["split"] == split]
    for name, curve in shown.groupby("estimator", sort=False):
        axes[0].plot(curve["step"], curve["loss"], label=name)
        axes[1].plot(curve["wall_time"], curve["loss"], label=name)
    for ax in axes:
        _loss_axis(ax, shown["loss"])
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall time (s)")
    axes[0].set_ylabel(f"{split} loss (−ELBO, nats per datapoint)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper",
               fontsize="small")
    return fig


def variance_over_training(df: pd.DataFrame) -> Any:
    """Total variance at a run's checkpoints, a line per estimator, a panel per group."""
    groups, fig, axes = _group_axes(df, 3.2)
    for ax, group in zip(axes, groups, strict=True):
        for name, line in df[df["group"] == group].groupby("estimator", sort=False):
            line = line.sort_values("step")
            ax.plot(line["step"], line["variance"], marker="o", label=name)
        ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("total gradient variance")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper",
               fontsize="small")
    return fig


# --------------------------------------------------------------------------- comparisons


def forest_plot(paired: pd.DataFrame) -> Any:
    """Paired log p(x) differences against the baseline, one row per spec: the mean with
    ±2 combined standard errors (seeds and datapoints in quadrature; thin, capped) and ±2
    standard errors over datapoints alone (thick)."""
    fig = _figure(6.5, 0.55 * len(paired) + 1.4)
    ax = fig.subplots()
    pos = np.arange(len(paired))[::-1]
    ax.errorbar(paired["mean_diff"], pos, xerr=2 * paired["se_combined"].fillna(0), fmt="none",
                ecolor="0.55", capsize=4, label="±2 se, seeds and datapoints combined")
    ax.errorbar(paired["mean_diff"], pos, xerr=2 * paired["se_datapoints"], fmt="o",
                color="C0", elinewidth=3, capsize=0, label="±2 se over datapoints")
    ax.axvline(0.0, color="0.3", linestyle=":")
    ax.set_yticks(pos, paired["spec"])
    baseline = paired["baseline"].iloc[0] if len(paired) else "baseline"
    ax.set_xlabel(f"log p(x) − log p(x) of {baseline}, nats per image (> 0: better)")
    ax.legend(fontsize="small", loc="best")
    return fig


def grid_learning_curves(histories: pd.DataFrame) -> Any:
    """Loss against the step for every cell of a grid, every logged point: each cell's
    training loss (a thin line per logged step) and its validation loss (markers at each
    evaluation), a colour per spec and a line style per seed, with a key for each.
    ``histories``: training histories with ``spec`` and ``seed`` columns."""
    from matplotlib.lines import Line2D

    fig = _figure(8, 4.2)
    ax = fig.subplots()
    styles = ("-", "--", ":", "-.")
    seeds = sorted(histories["seed"].unique())
    specs = list(dict.fromkeys(histories["spec"]))
    for spec, rows in histories.groupby("spec", sort=False):
        color = f"C{specs.index(spec) % 10}"
        for seed, cell in rows.groupby("seed"):
            style = styles[seeds.index(seed) % len(styles)]
            train = cell[cell["split"] == "train"].sort_values("step")
            ax.plot(train["step"], train["loss"], color=color, linestyle=style, linewidth=0.8,
                    alpha=0.6)
            valid = cell[cell["split"] == "valid"].sort_values("step")
            ax.plot(valid["step"], valid["loss"], color=color, linestyle=style, marker="o",
                    markersize=3)
    _loss_axis(ax, histories["loss"])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (−ELBO, nats per image)")
    ax.set_title("every cell: training loss (thin) and validation loss (dots)")
    keys = ([Line2D([], [], color=f"C{k % 10}", label=spec) for k, spec in enumerate(specs)]
            + [Line2D([], [], color="0.3", linestyle=styles[j % len(styles)],
                      label=f"seed {seed}") for j, seed in enumerate(seeds)])
    fig.legend(handles=keys, loc="outside right upper", fontsize="small")
    return fig


def per_dimension_bars(dims: pd.DataFrame) -> Any:
    """Per latent dimension (``dims``: ``dim`` and any of ``kl``, ``activity``, ``gate_on``
    columns): one bar panel per quantity, side by side."""
    labels = {"kl": "KL(q ‖ p), nats", "activity": "activity Var_x E_q[z]",
              "gate_on": "P(gate on)"}
    kinds = [k for k in labels if k in dims]
    fig = _figure(max(4.0, 0.22 * len(dims) + 2) * len(kinds), 3.0)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        ax.bar(dims["dim"], dims[kind], color="C0")
        _integer_ticks(ax.xaxis)
        ax.set_xlabel("latent dimension")
        ax.set_title(labels[kind])
    return fig


def latent_scatter(codes: pd.DataFrame) -> Any:
    """The 2-D view of the codes (``ppl-vae sample``'s latents.csv), coloured by label."""
    fig = _figure(5.5, 4.6)
    ax = fig.subplots()
    labels = codes["label"].to_numpy()
    for k, label in enumerate(np.unique(labels)):
        hit = labels == label
        ax.scatter(codes.loc[hit, "view_1"], codes.loc[hit, "view_2"], s=8, alpha=0.7,
                   color=f"C{k % 10}", label=str(label) if label >= 0 else "unlabelled")
    two_d = sum(c.startswith("z_") for c in codes.columns) <= 2
    ax.set_xlabel("z_0" if two_d else "principal component 1 of E_q[z | x]")
    ax.set_ylabel("z_1" if two_d else "principal component 2")
    _legend_outside(ax, markerscale=2, title="label")
    return fig
