"""The one place where ppl_vae results become ArviZ objects.

ArviZ 0.23 (the release installable on Python 3.11) stores results in
:class:`arviz.InferenceData`; ArviZ 1.x stores them in an ``xarray.DataTree`` with the
same group names. Everything that builds, splits or writes those objects lives here, so a
DataTree path is one module's change.

Named dimensions, shared by every group:

==============  ===================================================================
``chain``       MCMC chain (a single chain for draws from the guide)
``draw``        draw within a chain
``datapoint``   row of the dataset (coordinate: its index in the split)
``latent_dim``  latent dimension
``data_dim``    observed value within one datapoint
``step``        training step (or epoch) of the ELBO history
==============  ===================================================================

Groups of the combined object written by ``ppl-vae diagnose``:

* ``posterior``: draws from the guide q(z | x), ``(chain=1, draw, datapoint, latent_dim)``;
* ``sample_stats``: per draw ``log_weight`` = log p(x, z) − log q(z | x), ``log_prior``,
  ``log_q``; ``log_likelihood``: ``x`` = log p(x | z) per draw; ``observed_data``: ``x``;
* ``reference_posterior`` / ``reference_sample_stats``: the MCMC reference p(z | x) for a
  few datapoints (split back into a plain InferenceData by :func:`reference_part`);
* ``elbo_history``: every numeric column of the training history over ``step``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae.io import atomic_write_bytes

CHAIN, DRAW, DATAPOINT, LATENT, DATA, STEP = (
    "chain", "draw", "datapoint", "latent_dim", "data_dim", "step")
REFERENCE_GROUPS = {"reference_posterior": "posterior",
                    "reference_sample_stats": "sample_stats"}
HISTORY_GROUP = "elbo_history"


def _coords(datapoints: Any, latent_dim: int) -> dict[str, np.ndarray]:
    return {DATAPOINT: np.asarray(datapoints), LATENT: np.arange(latent_dim)}


def check_datapoints(datapoints: Any, batch: int) -> np.ndarray:
    """Datapoint labels as an array of length ``batch`` (default ``0..batch-1``)."""
    datapoints = np.arange(batch) if datapoints is None else np.asarray(datapoints)
    if datapoints.shape != (batch,):
        raise ValueError(f"datapoints must hold one label per datapoint ({batch}), "
                         f"got shape {datapoints.shape}")
    return datapoints


def guide_inference_data(draws: Mapping[str, Any], *, datapoints: Any = None,
                         log_terms: Mapping[str, Any] | None = None,
                         observed: Any = None) -> Any:
    """Draws from a guide (and their log-densities) as an InferenceData.

    Parameters
    ----------
    draws : site -> array ``(K, B, latent_dim)`` of draws from q(· | x), e.g.
        ``vae.sample_latents(x, K)`` converted to NumPy.
    datapoints : ``(B,)`` labels of the datapoints (default ``0..B-1``).
    log_terms : optional ``log_likelihood``, ``log_prior``, ``log_q`` arrays ``(K, B)``
        (``vae.log_prob_terms``); the log importance weight is derived from them.
    observed : optional ``(B, D)`` data.
    """
    import arviz as az
    import xarray as xr

    draws = {site: np.asarray(v) for site, v in draws.items()}
    first = next(iter(draws.values()))
    if first.ndim != 3:
        raise ValueError(f"guide draws must have shape (K, B, latent_dim), got {first.shape}")
    datapoints = check_datapoints(datapoints, first.shape[1])
    dims = {site: [DATAPOINT, LATENT] for site in draws}
    posterior = {site: v[None] for site, v in draws.items()}
    kwargs: dict[str, Any] = {}
    if log_terms is not None:
        terms = {k: np.asarray(v)[None] for k, v in log_terms.items()}
        kwargs["log_likelihood"] = {"x": terms["log_likelihood"]}
        kwargs["sample_stats"] = {
            "log_weight": terms["log_likelihood"] + terms["log_prior"] - terms["log_q"],
            "log_prior": terms["log_prior"], "log_q": terms["log_q"]}
        dims |= {name: [DATAPOINT] for name in ("x", "log_weight", "log_prior", "log_q")}
    coords = _coords(datapoints, first.shape[2])
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims, **kwargs)
    if observed is not None:
        idata.add_groups(observed_data=xr.Dataset(
            {"x": ((DATAPOINT, DATA), np.asarray(observed))}, coords={DATAPOINT: datapoints}))
    return idata


def mcmc_inference_data(samples: Mapping[str, Any], *, datapoints: Any = None,
                        sample_stats: Mapping[str, Any] | None = None) -> Any:
    """MCMC draws grouped by chain as an InferenceData.

    Parameters
    ----------
    samples : site -> array ``(chains, draws, B, latent_dim)`` (NumPyro's
        ``mcmc.get_samples(group_by_chain=True)``).
    sample_stats : optional per-draw statistics ``(chains, draws)``, e.g. ``diverging``.
    """
    import arviz as az

    samples = {site: np.asarray(v) for site, v in samples.items()}
    first = next(iter(samples.values()))
    if first.ndim != 4:
        raise ValueError("MCMC samples must have shape (chains, draws, B, latent_dim), "
                         f"got {first.shape}")
    datapoints = check_datapoints(datapoints, first.shape[2])
    stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
    return az.from_dict(posterior=samples, sample_stats=stats or None,
                        coords=_coords(datapoints, first.shape[3]),
                        dims={site: [DATAPOINT, LATENT] for site in samples})


def history_dataset(history: Any) -> Any:
    """A training history (DataFrame) as a Dataset over ``step``.

    The tidy history of :func:`ppl_vae.training.fit` (``step, epoch, split, loss, wall_time``)
    becomes one variable per value column and split (``loss_train``, ``loss_valid``, ...;
    NaN at steps where a split was not evaluated). Without a ``split`` column every numeric
    column is a variable; without ``step`` the row number is the coordinate.
    """
    import pandas as pd
    import xarray as xr

    if STEP not in history.columns:
        history = history.assign(**{STEP: np.arange(len(history))})
    if "split" in history.columns:
        values = [c for c in history.select_dtypes("number").columns
                  if c not in (STEP, "epoch")]
        wide = history.pivot_table(index=STEP, columns="split", values=values, aggfunc="last")
        wide.columns = [f"{value}_{split}" for value, split in wide.columns]
    else:
        wide = history.select_dtypes("number").set_index(STEP)
    wide = wide.sort_index()
    data = {c: (STEP, wide[c].to_numpy(dtype=np.float64)) for c in wide.columns}
    return xr.Dataset(data, coords={STEP: pd.Index(wide.index).to_numpy()})


def combine(guide: Any, *, reference: Any = None, history: Any = None) -> Any:
    """One InferenceData with the guide, the MCMC reference and the ELBO history.

    ``reference`` is an InferenceData from :func:`mcmc_inference_data`; its groups are
    stored as ``reference_posterior`` and ``reference_sample_stats``. ``history`` is a
    DataFrame (see :func:`history_dataset`).
    """
    out = guide.copy()
    groups = {}
    if reference is not None:
        groups |= {name: reference[group] for name, group in REFERENCE_GROUPS.items()
                   if group in reference.groups()}
    if history is not None:
        groups[HISTORY_GROUP] = history_dataset(history)
    if groups:
        out.add_groups(groups)
    return out


def reference_part(idata: Any) -> Any:
    """The MCMC reference of a combined object as its own InferenceData (``posterior``,
    ``sample_stats``), ready for ``az.rhat``, ``az.plot_trace``, ``az.plot_rank``."""
    import arviz as az

    if "reference_posterior" not in idata.groups():
        raise ValueError("this InferenceData holds no MCMC reference (no "
                         "'reference_posterior' group); run the diagnosis with datapoints "
                         "for MCMC")
    return az.InferenceData(**{group: idata[name] for name, group in REFERENCE_GROUPS.items()
                               if name in idata.groups()})


def write_netcdf(idata: Any, path: str | Path) -> Path:
    """Write ``idata`` to a netCDF-4 file (h5netcdf), atomically."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmp:
        scratch = Path(tmp) / path.name
        idata.to_netcdf(str(scratch), engine="h5netcdf")
        atomic_write_bytes(path, scratch.read_bytes())
    return path


def read_netcdf(path: str | Path) -> Any:
    """Read an InferenceData written by :func:`write_netcdf` (loaded into memory)."""
    import arviz as az

    idata = az.from_netcdf(str(path), engine="h5netcdf")
    # Load eagerly so the file handle is closed and the file can be replaced later.
    for group in idata.groups():
        idata[group].load()
    return idata
