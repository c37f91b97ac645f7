"""One cell of a comparison grid: train a spec with a seed, evaluate it on the test split
(or the validation split, to choose between models without looking at the test split).

A :class:`Cell` names everything its result depends on (the spec's content, the seed, the
data, the training budget, the evaluation settings); its :meth:`Cell.key` hashes them, so a
finished cell is found again by key and a re-run grid skips it. :func:`run_cell` trains into
``cells/KEY/`` (an ordinary run directory: ``ppl-vae report`` works on it; an interrupted
training resumes from its last checkpoint) and returns a :class:`CellResult`;
:func:`write_result` stores it beside the run, ``cell.json`` last: it lists every result file
with its SHA-256, and a cell is done only when they all match (:mod:`ppl_vae.compare.store`).

Evaluation on the cell's ``split`` (``"test"`` by default): importance-sampled log p(x) with
K particles (the IWAE protocol, Burda et al. 2016) for models with an encoder; encoder-free
models (per-datapoint codes exist only for training points) get AIS from the prior instead,
and the table says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.compare.store import CELL_FILE, cell_problem, result_files
from ppl_vae.io import atomic_write_text, read_json, write_json
from ppl_vae.runs.layout import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    SAMPLES_FILE,
    SPEC_FILE,
)

PER_DATAPOINT_FILE = "per_datapoint.csv"
CELLS_DIR = "cells"
RESULT_FILES = (SPEC_FILE, CONFIG_FILE, PARAMS_FILE, HISTORY_FILE, METRICS_FILE, SAMPLES_FILE,
                PER_DATAPOINT_FILE)
"""The files of a cell that ``cell.json`` lists with their SHA-256 (and a Ray task returns)."""
PER_DATAPOINT_COLUMNS = ["datapoint", "source_row", "label", "log_px", "log_px_se", "elbo"]
METRIC_COLUMNS = ("metric", "value", "stderr", "stderr_source")
"""A cell's metric rows; ``stderr_source`` as in :data:`ppl_vae.evaluation.STDERR_SOURCES`."""
TIME_METRICS = ("train_seconds", "eval_seconds")
"""Wall-clock metrics: the only ones that differ between two runs of the same cell."""


_NPZ_KEYS = ("images_key", "labels_key")


@dataclass(frozen=True)
class Cell:
    """A (spec, seed) pair with the data, budget and evaluation settings shared by a grid.

    ``dataset_sha256`` is the content hash of ``dataset``
    (:func:`ppl_vae.data.provenance.dataset_sha256`; empty: not checked)."""

    spec_toml: str
    spec_name: str
    seed: int
    backend: str = "pyro"
    dataset: str = "mnist5k"
    data_seed: int = 0
    num_steps: int | None = None
    num_epochs: int | None = None
    batch_size: int | None = None
    num_samples: int = 1000
    eval_points: int | None = None
    ais_steps: int = 200
    ais_chains: int = 8
    model_samples: int = 100
    split: str = "test"
    device: str = "cpu"
    dataset_sha256: str = ""
    images_key: str | None = None
    labels_key: str | None = None

    def key(self) -> str:
        """``SPEC-seedN-HASH``: the same settings always give the same key."""
        settings = asdict(self)
        for name in _NPZ_KEYS:  # unset, as in grids written before they existed: same keys
            if settings[name] is None:
                del settings[name]
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        return f"{self.spec_name}-seed{self.seed}-{digest.hexdigest()[:10]}"

    def spec(self) -> Any:
        from ppl_vae.spec import loads

        return loads(self.spec_toml, source=f"the spec of cell {self.spec_name}")


@dataclass(frozen=True)
class CellResult:
    """What a finished cell hands back: its tidy metric rows (:data:`METRIC_COLUMNS`), the
    per-datapoint log p(x) on the cell's split (:data:`PER_DATAPOINT_COLUMNS`) and the name
    of the log p(x) estimator. The run directory beside it keeps the rest (history,
    samples)."""

    cell: Cell
    metrics: pd.DataFrame
    per_datapoint: pd.DataFrame
    estimator: str
    ran_on: dict[str, Any] | None = None


def cell_dir(root: str | Path, cell: Cell) -> Path:
    """``root/cells/KEY``; a spec name that would put it elsewhere (a separator, ``..``,
    an absolute path) is refused."""
    name = cell.spec_name
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"spec name {name!r} cannot name a cell folder: it must be a plain "
                         "name (no '/', '\\', leading '.' or '..'); rename the spec")
    parent = Path(root) / CELLS_DIR
    folder = parent / cell.key()
    if folder.resolve().parent != parent.resolve():
        raise ValueError(f"the cell folder of spec {name!r} would lie outside {parent}; "
                         "rename the spec")
    return folder


def is_done(root: str | Path, cell: Cell) -> bool:
    return cell_problem(cell_dir(root, cell), cell.key()) is None


def run_cell(cell: Cell, root: str | Path, *, threads: int = 1,
             node_id: str | None = None) -> CellResult:
    """Train (or resume) and evaluate ``cell`` under ``root/cells/KEY`` with ``threads``
    CPU threads. The result's ``ran_on`` records the host, the Ray node ``node_id`` (None
    off Ray), the device, the threads and the folder the cell ran in."""
    from ppl_vae import runs
    from ppl_vae.data import prepare
    from ppl_vae.data.provenance import dataset_sha256
    from ppl_vae.models import build
    from ppl_vae.training import fit

    spec = cell.spec()
    out = cell_dir(root, cell)
    keys = {name: getattr(cell, name) for name in _NPZ_KEYS if getattr(cell, name) is not None}
    if cell.dataset_sha256:
        found = dataset_sha256(cell.dataset, **keys)
        if found != cell.dataset_sha256:
            raise ValueError(f"the dataset {cell.dataset} on {socket.gethostname()} has "
                             f"SHA-256 {found[:12]}, not the grid's {cell.dataset_sha256[:12]}; "
                             "give every node the same copy of the data")
    data_config = {"source": cell.dataset, "binarization": spec.training.binarization,
                   "dequantize": False, "fractions": [0.8, 0.1, 0.1], "seed": cell.data_seed,
                   "shuffle": True, **keys}
    splits = prepare(cell.dataset, **keys, likelihood=spec.likelihood.name,
                     data_shape=spec.data_shape,
                     binarization=data_config["binarization"], seed=cell.data_seed)
    num_data = None if spec.posterior.amortized else len(splits.train)
    vae = build(spec, cell.backend, seed=cell.seed, num_data=num_data, device=cell.device)
    result = fit(vae, splits, num_steps=cell.num_steps, num_epochs=cell.num_epochs,
                 batch_size=cell.batch_size, seed=cell.seed, out_dir=out,
                 resume=runs.is_run(out), progress=False, data_config=data_config,
                 device=cell.device, threads=threads)
    start = time.perf_counter()
    run = runs.Run(path=out, spec=spec, config=read_json(out / runs.CONFIG_FILE), vae=vae)
    metrics, per_datapoint, estimator = _evaluate(cell, vae, run, splits)
    # the step of the parameters evaluated is the metrics' checkpoint_step; how far training ran
    more = {"trained_steps": result.num_steps, "train_seconds": result.seconds,
            "eval_seconds": time.perf_counter() - start}
    extra = pd.DataFrame({"metric": list(more), "value": list(more.values()),
                          "stderr": math.nan, "stderr_source": ""})
    ran_on = {"host": socket.gethostname(), "node_id": node_id, "device": cell.device,
              "threads": threads, "folder": str(out.resolve())}
    return CellResult(cell=cell, metrics=pd.concat([metrics, extra], ignore_index=True),
                      per_datapoint=per_datapoint, estimator=estimator, ran_on=ran_on)


def _evaluate(cell: Cell, vae: Any, run: Any, splits: Any) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                     str]:
    from ppl_vae import runs
    from ppl_vae.diagnostics.psis import KHAT_GOOD, KHAT_OK, psis
    from ppl_vae.evaluation import (
        EvaluationConfig,
        ais_log_likelihood,
        evaluate_split,
        importance_sample,
        likelihood_units,
    )
    from ppl_vae.reports.figures import class_columns, display_range, save_image_grid

    data = run.evaluation_data(cell.split, max_points=cell.eval_points, seed=0)
    x = data.x
    units = likelihood_units(vae.spec.likelihood, vae.spec.data_dim,
                             dequantized=splits.dequantized, max_value=splits.max_value)
    amortized = vae.spec.posterior.amortized
    config = EvaluationConfig(num_samples=cell.num_samples, seed=0,
                              num_model_samples=cell.model_samples,
                              ais_points=0 if amortized else len(x), ais_steps=cell.ais_steps,
                              ais_chains=cell.ais_chains, ais_start="prior")
    extra: dict[str, tuple[float, float, str]] = {}
    if amortized:
        est = importance_sample(vae, x, cell.num_samples, seed=0, return_log_weights=True)
        ais = None
        log_px, log_px_se, elbo = est.log_likelihood, est.stderr, est.elbo
        khat = psis(est.log_weights).khat
        extra["khat_mean"] = (float(np.mean(khat)), math.nan, "")
        extra["khat_unreliable_fraction"] = (float(np.mean(khat > KHAT_OK)), math.nan, "")
        extra["khat_ok_fraction"] = (float(np.mean((khat >= KHAT_GOOD) & (khat <= KHAT_OK))),
                                     math.nan, "")
        estimator = f"IS, K = {cell.num_samples}"
    else:
        est = None
        ais = ais_log_likelihood(vae, x, num_steps=cell.ais_steps, num_chains=cell.ais_chains,
                                 start="prior", seed=0)
        log_px, log_px_se, elbo = ais.log_likelihood, ais.stderr, np.full(len(x), np.nan)
        estimator = f"AIS from the prior, T = {cell.ais_steps}, {cell.ais_chains} chains"
    # metrics.csv rows carry the run's id, as ppl-vae evaluate writes them (the report reads those)
    table, _ = evaluate_split(vae, x, run=run.run_id, split=cell.split, units=units,
                              train=data.train, valid=data.valid, config=config, estimate=est,
                              ais_estimate=ais)
    table.loc[len(table)] = [run.run_id, cell.split, runs.STEP_METRIC,
                             float(run.progress().params_step), math.nan, ""]
    atomic_write_text(run.path / runs.METRICS_FILE, table.to_csv(index=False))

    n = len(log_px)
    # a comparison's figures vary over test images: their errors are over datapoints
    se_log_px = float(np.std(log_px, ddof=1) / math.sqrt(n))
    extra["log_px"] = (float(np.mean(log_px)), se_log_px, "datapoints")
    extra["bits_per_dim"] = (float(units.bits_per_dim(np.mean(log_px))),
                             se_log_px / (units.data_dim * math.log(2.0)), "datapoints")
    # the rate in bits, closed form or Monte Carlo (the evaluation table names which)
    rate = table.loc[table["metric"].isin(("rate_bits", "rate_bits_mc"))]
    if len(rate):
        extra["rate_bits"] = (float(rate["value"].iloc[0]), float(rate["stderr"].iloc[0]),
                              str(rate["stderr_source"].iloc[0]))
    condition = vae.spec.condition
    count, columns = class_columns(64, None if condition is None else condition.classes)
    save_image_grid(run.path / runs.SAMPLES_FILE, np.asarray(vae.sample(count, seed=0)),
                    splits.image_shape, num_columns=columns,
                    value_range=display_range(vae.spec.likelihood.data_range))
    # sample scores need decoder means (as in ppl-vae evaluate): pixel-by-pixel draws of a
    # local autoregressive decoder for hundreds of samples would outlast the cell
    if splits.train_labels is not None and vae.has_decoder_mean:
        from ppl_vae.evaluation.sample_quality import classifier_for, sample_scores

        clf = classifier_for(splits)
        scores = sample_scores(clf, np.asarray(vae.sample(max(cell.model_samples, 500),
                                                          seed=1)))
        extra |= {f"sample_{name}": (value, math.nan, "") for name, value in scores.items()}
        extra["classifier_accuracy"] = (clf.accuracy, math.nan, "")
    # one row per metric: the figures above replace the evaluation table's of the same name
    rows = table.loc[~table["metric"].isin(list(extra)), list(METRIC_COLUMNS)]
    rows = pd.concat([rows, pd.DataFrame([dict(zip(METRIC_COLUMNS, (m, *v), strict=True))
                                          for m, v in extra.items()])], ignore_index=True)
    labels = getattr(splits, f"{cell.split}_labels")
    per_datapoint = pd.DataFrame({
        "datapoint": np.arange(n), "source_row": splits.indices[cell.split][:n],
        "label": labels[:n] if labels is not None else np.full(n, -1),
        "log_px": log_px, "log_px_se": log_px_se, "elbo": elbo}, columns=PER_DATAPOINT_COLUMNS)
    return rows, per_datapoint, estimator


def write_result(root: str | Path, result: CellResult) -> Path:
    """Store a finished cell: ``per_datapoint.csv``, then ``cell.json`` (the done marker,
    listing the SHA-256 of every result file in the folder, and where the cell ran)."""
    folder = cell_dir(root, result.cell)
    (folder / CELL_FILE).unlink(missing_ok=True)
    atomic_write_text(folder / PER_DATAPOINT_FILE,
                      result.per_datapoint.to_csv(index=False, float_format="%.17g"))
    write_json(folder / CELL_FILE, {
        "cell": asdict(result.cell), "key": result.cell.key(), "estimator": result.estimator,
        "metrics": result.metrics.to_dict("records"), "files": result_files(folder, RESULT_FILES),
        "num_datapoints": len(result.per_datapoint), "ran_on": result.ran_on})
    return folder


def read_result(root: str | Path, cell: Cell) -> CellResult:
    folder = cell_dir(root, cell)
    record = read_json(folder / CELL_FILE)
    metrics = pd.DataFrame(record["metrics"], columns=list(METRIC_COLUMNS))
    # cells from before stderr_source existed name no source
    metrics["stderr_source"] = [v if isinstance(v, str) else "" for v in metrics["stderr_source"]]
    per_datapoint = pd.read_csv(folder / PER_DATAPOINT_FILE)
    if len(per_datapoint) != record["num_datapoints"]:
        raise ValueError(f"{folder / PER_DATAPOINT_FILE} has {len(per_datapoint)} rows where "
                         f"{CELL_FILE} says {record['num_datapoints']}; delete {folder} and "
                         "run the grid again")
    return CellResult(cell=cell, metrics=metrics.astype({"value": float, "stderr": float}),
                      per_datapoint=per_datapoint, estimator=record["estimator"],
                      ran_on=record.get("ran_on"))
