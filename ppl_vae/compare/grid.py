"""The posterior × prior comparison: a grid of (spec, seed) cells, run, collected, written.

:func:`plan` makes the cells; :func:`run_grid` skips the finished ones (found by key under
``OUT/cells/``), runs the rest on an executor, stores each result as it arrives, retries a
failed cell once, then writes the grid's tables and report:

    OUT/table.csv           tidy: spec, seed, key, estimator, metric, value, stderr,
                            stderr_source
    OUT/summary.csv         per spec and metric: mean, se over seeds, over datapoints (or
                            Monte Carlo) and combined, num_seeds, best, importance flag
    OUT/paired.csv          per spec: paired log p(x) differences against the baseline
    OUT/paired_seeds.csv    the same per seed
    OUT/failures.csv        cells that failed twice: spec, seed, key, error
    OUT/report.md, .html    the comparison report (:func:`ppl_vae.reports.compare_page`)
    OUT/cells/KEY/          each cell's run directory, per_datapoint.csv, cell.json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ppl_vae.compare import cells as cells_module
from ppl_vae.compare.cells import Cell
from ppl_vae.compare.summary import (
    PAIRED_COLUMNS,
    PAIRED_SEED_COLUMNS,
    paired_differences,
    summarize,
)
from ppl_vae.io import write_csv_tables
from ppl_vae.models.conditioning import require_unconditioned

TABLE_COLUMNS = ["spec", "seed", "key", "estimator", "metric", "value", "stderr",
                 "stderr_source"]
FAILURE_COLUMNS = ["spec", "seed", "key", "error"]
TABLES = ("table", "summary", "paired", "paired_seeds", "failures")


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
    how it was trained."""
    import tomli_w

    from ppl_vae.models import load_spec

    loaded = [load_spec(s).with_training(**(training or {})) for s in specs]
    for spec in loaded:
        require_unconditioned(spec, "the comparison grid")
    names = [s.name for s in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"two specs share a name ({', '.join(names)}): the grid keys cells by "
                         "spec name; rename one")
    return [Cell(spec_toml=tomli_w.dumps(spec.to_dict()), spec_name=spec.name, seed=int(seed),
                 **settings) for seed in seeds for spec in loaded]


def run_grid(cells: Sequence[Cell], out: str | Path, executor: Any, *,
             baseline: str | None = None, retries: int = 1,
             progress: Callable[[str], None] | None = None) -> GridResult:
    """Run the unfinished cells on ``executor`` and collect every finished one."""
    out = Path(out)
    say = progress or (lambda _: None)
    todo = [c for c in cells if not cells_module.is_done(out, c)]
    skipped = [c.key() for c in cells if c not in todo]
    if skipped:
        say(f"{len(skipped)} of {len(cells)} cells already finished; running {len(todo)}")
    ran, failures = [], []
    attempts = {c.key(): 0 for c in todo}
    while todo:
        again = []
        for cell, outcome in executor.run(todo, str(out)):
            key = cell.key()
            if isinstance(outcome, BaseException):
                attempts[key] += 1
                if attempts[key] <= retries:
                    say(f"cell {key} failed ({_one_line(outcome)}); retrying")
                    again.append(cell)
                else:
                    say(f"cell {key} failed again: {_one_line(outcome)}")
                    failures.append({"spec": cell.spec_name, "seed": cell.seed, "key": key,
                                     "error": _one_line(outcome)})
                continue
            cells_module.write_result(out, outcome)
            ran.append(key)
            say(f"cell {key} done ({len(ran)} of {len(attempts)})")
        todo = again
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
    return {"backend": first.backend, "dataset": first.dataset, "data_seed": first.data_seed,
            "num_steps": first.num_steps, "num_epochs": first.num_epochs,
            "batch_size": first.batch_size, "num_samples": first.num_samples,
            "eval_points": first.eval_points, "split": first.split,
            "seeds": sorted({c.seed for c in cells}),
            "specs": list(dict.fromkeys(c.spec_name for c in cells))}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"

