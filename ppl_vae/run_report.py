"""The report of a run directory: what its jobs wrote, rendered in one page.

``runs/NAME/report.md`` and ``report.html`` show the spec and training settings, the training
curves (``history.csv``), the metrics (``metrics.csv`` from ``ppl-vae evaluate``), the sample
and reconstruction grids (``ppl-vae sample``), and the headline tables of the diagnostics
(``diagnostics.csv``) and the gradient-variance study (``variance/ratios.csv``) when those jobs
ran. It only reads tables; nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ppl_vae import runs
from ppl_vae import spec as spec_module
from ppl_vae.io import read_json
from ppl_vae.report import Report

_IMAGES = (("samples.png", "Samples: decoder means E[x | z] for z ~ p(z)"),
           ("reconstructions.png", "Held-out images (rows) above their reconstructions"))


def run_report(run_dir: str | Path) -> Report:
    """Collect a run directory's tables and figures into a :class:`Report`."""
    run_dir = Path(run_dir)
    spec = spec_module.load(run_dir / runs.SPEC_FILE)
    config = read_json(run_dir / runs.CONFIG_FILE)
    report = Report(f"ppl_vae run: {run_dir.name}")
    report.heading("Model").text(spec.description or spec.name)
    report.table(pd.DataFrame({
        "field": ["posterior", "prior", "likelihood", "latent_dim", "KL", "backend", "dataset"],
        "value": [spec.posterior.name, spec.prior.name, spec.likelihood.name,
                  str(spec.latent_dim), spec.kl, config.get("backend", "?"),
                  str(config.get("data", {}).get("source", "?"))]}))
    training = {k: v for k, v in config.items() if k not in ("data", "backend")}
    if training:
        report.heading("Training settings").table(pd.DataFrame(
            {"setting": list(training), "value": [str(v) for v in training.values()]}))
    history_path = run_dir / runs.HISTORY_FILE
    if history_path.exists():
        from ppl_vae.plots import training_curves

        history = pd.read_csv(history_path)
        last = history.sort_values("step").groupby("split").tail(1)
        report.heading("Training").table(last[["split", "step", "epoch", "loss", "wall_time"]],
                                         caption="last recorded loss (−ELBO, nats per datapoint)")
        report.figure(training_curves(history), "training_curves", "loss against steps")
    metrics_path = run_dir / "metrics.csv"
    if metrics_path.exists():
        report.heading("Evaluation").table(pd.read_csv(metrics_path),
                                           caption="ppl-vae evaluate (value ± stderr)")
    images = [(run_dir / name, caption) for name, caption in _IMAGES
              if (run_dir / name).exists()]
    if images:
        report.heading("Samples")
        for path, caption in images:
            report.image(path.read_bytes(), path.stem, caption)
    diagnostics = run_dir / "diagnostics.csv"
    if diagnostics.exists():
        table = pd.read_csv(diagnostics)
        overall = table[table["datapoint"].isna()] if "datapoint" in table else table
        report.heading("Diagnostics").text("Full report: diagnostics.html")
        report.table(overall.head(40), caption="ppl-vae diagnose: summary rows")
    ratios = run_dir / "variance" / "ratios.csv"
    if ratios.exists():
        report.heading("Gradient variance").text("Full report: variance/report.html")
        report.table(pd.read_csv(ratios), caption="ppl-vae variance: headline ratios")
    return report


def write_run_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run directory."""
    return run_report(run_dir).write(run_dir, "report")
