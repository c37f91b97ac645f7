"""The posterior × prior comparison: a grid of (spec, seed) cells, run, collected, written.

:func:`plan` makes the cells; :func:`run_grid` skips the finished ones (found by key under
``OUT/cells/``, every result file matching its SHA-256), runs the rest on an executor, stores
each result as it arrives, retries a failed cell once, then writes the grid's tables and
report. ``OUT`` is a local folder that compare claims with ``compare.json``; it refuses a
folder holding files it did not write unless ``overwrite`` (which replaces only the files
below and deletes nothing):

    OUT/compare.json        the marker: this folder holds a comparison grid
    OUT/table.csv           tidy: spec, seed, key, estimator, metric, value, stderr,
                            stderr_source
    OUT/summary.csv         per spec and metric: mean, se over seeds, over datapoints (or
                            Monte Carlo) and combined, num_seeds, best, importance flag
    OUT/paired.csv          per spec: paired log p(x) differences against the baseline
    OUT/paired_seeds.csv    the same per seed
    OUT/failures.csv        cells that failed twice: spec, seed, key, error
    OUT/report.md, .html    the comparison report (:func:`ppl_vae.reports.compare_page`)
    OUT/cells/KEY/          each cell's run directory, per_datapoint.csv, cell.json
                            (:mod:`ppl_vae.compare.store`)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ppl_vae import __version__
from ppl_vae.compare import cells as cells_module
from ppl_vae.compare.cells import Cell
from ppl_vae.compare.progress import GridProgress
from ppl_vae.compare.store import CellFiles, cell_problem, unpack
from ppl_vae.compare.summary import (
    PAIRED_COLUMNS,
    PAIRED_SEED_COLUMNS,
    paired_differences,
    summarize,
)
from ppl_vae.data.provenance import data_sha256, resolve_source
from ppl_vae.io import describe_entries, write_csv_tables, write_json
from ppl_vae.models.conditioning import require_unconditioned

TABLE_COLUMNS = ["spec", "seed", "key", "estimator", "metric", "value", "stderr",
                 "stderr_source"]
FAILURE_COLUMNS = ["spec", "seed", "key", "error"]
TABLES = ("table", "summary", "paired", "paired_seeds", "failures")
MARKER_FILE = "compare.json"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class OutFolderError(ValueError):
    """An ``--out`` compare may not write into; the message says why and what to do."""


def check_out(out: str | Path, *, overwrite: bool = False) -> Path:
    """``out`` as a Path if compare may write its grid there, touching nothing: a new or
    empty folder, one holding ``compare.json``, or with ``overwrite`` any folder."""
    if _URI.match(str(out)):
        raise OutFolderError(f"--out {out} is a storage URI; compare writes a local folder "
                             "(the driver's: Ray nodes need none shared). Write to a local "
                             "folder and copy it after (e.g. aws s3 sync, gsutil rsync)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutFolderError(f"--out {out} is a file; nothing was touched. Choose a new or "
                             "empty folder")
    ours = overwrite or not out.is_dir() or (out / MARKER_FILE).is_file()
    entries = "" if ours else describe_entries(out)
    if entries:
        raise OutFolderError(
            f"--out {out} holds {entries} that ppl-vae compare did not write (no "
            f"{MARKER_FILE}); nothing was touched. Choose a new or empty folder, or pass "
            "--overwrite to write the grid beside them (files compare does not write are "
            "kept)")
    return out


def claim_out(out: str | Path, *, overwrite: bool = False) -> Path:
    """:func:`check_out`, then create ``out`` and its ``compare.json``."""
    out = check_out(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER_FILE).is_file():
        write_json(out / MARKER_FILE, {"written_by": "ppl-vae compare", "version": __version__})
    return out


@dataclass
class GridResult:
    """The grid's tables (see the module docstring) and which cells ran this time."""

    table: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    paired_seeds: pd.DataFrame
    failures: pd.DataFrame
    baseline: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def plan(specs: Sequence[Any], seeds: Sequence[int], *, training: dict[str, Any] | None = None,
         **settings: Any) -> list[Cell]:
    """One :class:`Cell` per spec (a ModelSpec, a spec file or a zoo name) and seed, seed by
    seed: the first cells a pool runs are different specs, so a load on the machine that
    changes over time does not fall on one spec's timings alone.

    ``training`` replaces fields of every spec's ``[training]`` (the training protocol, e.g.
    ``{"patience": 5, "lr_schedule": "cosine"}``), so each cell's spec, and so its key, says
    how it was trained. A dataset path is made absolute and the data's content hash
    (:func:`~ppl_vae.data.provenance.data_sha256`) goes into every cell, so cells
    finished on other data are not reused."""
    import tomli_w

    from ppl_vae.data import check_data, load
    from ppl_vae.models import load_spec

    loaded = [load_spec(s).with_training(**(training or {})) for s in specs]
    for spec in loaded:
        require_unconditioned(spec, "the comparison grid")
    names = [s.name for s in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"two specs share a name ({', '.join(names)}): the grid keys cells by "
                         "spec name; rename one")
    settings["dataset"] = resolve_source(str(settings.get("dataset", "mnist5k")))
    raw = load(settings["dataset"], images_key=settings.get("images_key"),
               labels_key=settings.get("labels_key"))
    for spec in loaded:  # a spec that cannot read these data fails here, not in every cell
        check_data(raw.values[:1], data_shape=spec.data_shape, name=raw.name)
    settings.setdefault("dataset_sha256", data_sha256(raw))
    cells = [Cell(spec_toml=tomli_w.dumps(spec.to_dict()), spec_name=spec.name, seed=int(seed),
                  **settings) for seed in seeds for spec in loaded]
    for cell in cells[:len(loaded)]:
        cells_module.cell_dir(".", cell)  # a spec name that is no plain name fails here
    return cells


def run_grid(cells: Sequence[Cell], out: str | Path, executor: Any, *,
             baseline: str | None = None, retries: int = 1,
             progress: Callable[[str], None] | None = None, bar: bool = False,
             overwrite: bool = False) -> GridResult:
    """Run the unfinished cells on ``executor`` and collect every finished one.

    ``out`` is claimed first (:func:`claim_out`); ``progress`` gets one line per event,
    ``bar`` adds a tqdm bar on a terminal (:class:`~ppl_vae.compare.progress.GridProgress`)."""
    out = claim_out(out, overwrite=overwrite)
    say = progress or (lambda _: None)
    todo = [c for c in cells if not cells_module.is_done(out, c)]
    skipped = [c.key() for c in cells if c not in todo]
    if skipped:
        say(f"{len(skipped)} of {len(cells)} cells already finished; running {len(todo)}")
    for cell in todo:
        for line in _not_reused(out, cell):
            say(line)
    ran, failures = [], []
    attempts = {c.key(): 0 for c in todo}
    tracker = GridProgress(len(todo), getattr(executor, "capacity", lambda: 1), progress,
                           bar=bar)
    try:
        while todo:
            again = []
            for cell, outcome in executor.run(todo, str(out)):
                key = cell.key()
                if isinstance(outcome, BaseException):
                    attempts[key] += 1
                    if attempts[key] <= retries:
                        tracker.line(f"cell {key} failed ({_one_line(outcome)}); retrying")
                        again.append(cell)
                    else:
                        tracker.gave_up(key, _one_line(outcome))
                        failures.append({"spec": cell.spec_name, "seed": cell.seed, "key": key,
                                         "error": _one_line(outcome)})
                    continue
                if isinstance(outcome, CellFiles):
                    unpack(cells_module.cell_dir(out, cell), outcome)
                else:
                    cells_module.write_result(out, outcome)
                ran.append(key)
                tracker.finished(key)
            todo = again
    finally:
        tracker.close()
    result = collect(cells, out, baseline=baseline)
    result.ran, result.skipped = ran, skipped
    result.failures = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    return result


def collect(cells: Sequence[Cell], out: str | Path, *, baseline: str | None = None) -> GridResult:
    """The tables of the finished cells among ``cells`` (read back from ``out``)."""
    rows, points = [], []
    for cell in cells:
        if not cells_module.is_done(out, cell):
            continue
        result = cells_module.read_result(out, cell)
        head = {"spec": cell.spec_name, "seed": cell.seed, "key": cell.key(),
                "estimator": result.estimator}
        rows.append(result.metrics.assign(**head))
        points.append(result.per_datapoint.assign(spec=cell.spec_name, seed=cell.seed))
    table = (pd.concat(rows, ignore_index=True)[TABLE_COLUMNS] if rows
             else pd.DataFrame(columns=TABLE_COLUMNS))
    baseline = baseline or (cells[0].spec_name if cells else "")
    per_datapoint = pd.concat(points, ignore_index=True) if points else None
    if per_datapoint is not None:
        paired, paired_seeds = paired_differences(per_datapoint, baseline)
    else:
        paired = pd.DataFrame(columns=PAIRED_COLUMNS)
        paired_seeds = pd.DataFrame(columns=PAIRED_SEED_COLUMNS)
    return GridResult(table=table, summary=summarize(table, per_datapoint), paired=paired,
                      paired_seeds=paired_seeds, failures=pd.DataFrame(columns=FAILURE_COLUMNS),
                      baseline=baseline, settings=_settings(cells))


def write_grid(result: GridResult, out: str | Path, *, cells: Sequence[Cell] = ()) -> list[Path]:
    """Write the tables as CSV and the comparison report."""
    from ppl_vae.reports.pages import CellFolder, write_compare_report

    out = Path(out)
    paths = write_csv_tables(result, TABLES, out)
    folders = [CellFolder(cell.key(), cell.spec_name, cell.seed, cells_module.cell_dir(out, cell),
                          cells_module.is_done(out, cell)) for cell in cells]
    paths += list(write_compare_report(result, out, folders))
    return paths


def _settings(cells: Sequence[Cell]) -> dict[str, Any]:
    if not cells:
        return {}
    first = cells[0]
    return {"backend": first.backend, "device": first.device, "dataset": first.dataset,
            "dataset_sha256": first.dataset_sha256, "data_seed": first.data_seed,
            "num_steps": first.num_steps, "num_epochs": first.num_epochs,
            "batch_size": first.batch_size, "num_samples": first.num_samples,
            "eval_points": first.eval_points, "split": first.split,
            "seeds": sorted({c.seed for c in cells}),
            "specs": list(dict.fromkeys(c.spec_name for c in cells))}


def _not_reused(out: Path, cell: Cell) -> list[str]:
    """Why a cell folder of ``cell``'s spec and seed is not reused: its files do not match
    its ``cell.json``, or it was finished with the same settings on other data."""
    key, lines = cell.key(), []
    folder = cells_module.cell_dir(out, cell)
    problem = cell_problem(folder, key)
    if (folder / cells_module.CELL_FILE).exists() and problem is not None:
        lines.append(f"cell {key}: {problem}; running it again")
    mine = {**asdict(cell), "dataset_sha256": None}
    for other in sorted((out / cells_module.CELLS_DIR).glob(f"{cell.spec_name}-seed{cell.seed}-*")):
        try:
            record = json.loads((other / cells_module.CELL_FILE).read_text())
            theirs = {**record["cell"], "dataset_sha256": None}
            digest = record["cell"]["dataset_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if other.name != key and theirs == mine and digest != cell.dataset_sha256:
            lines.append(f"cell {other.name} was finished on other data (dataset "
                         f"{cell.dataset} SHA-256 {digest[:12]} then, "
                         f"{cell.dataset_sha256[:12]} now): not reused; running {key}")
    return lines


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"

