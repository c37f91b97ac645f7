"""Report pages: a run, a diagnosis, a gradient-variance study.

Pages render what the jobs stored (tables, figures from :mod:`ppl_vae.reports.figures`);
nothing is recomputed. ``runs/NAME/report.md`` and ``report.html`` show the spec and training
settings, the training curves (``history.csv``), the metrics (``metrics.csv`` from
``ppl-vae evaluate``), the sample and reconstruction grids (``ppl-vae sample``), and the
headline tables of the diagnostics (``diagnostics.csv``) and the gradient-variance study
(``variance/ratios.csv``) when those jobs ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ppl_vae import runs
from ppl_vae.reports import figures
from ppl_vae.reports.tables import last_losses
from ppl_vae.reports.writer import Report, machine_description

_IMAGES = ((runs.SAMPLES_FILE, "Samples"),
           (runs.RECONSTRUCTIONS_FILE, "Images (rows) above their reconstructions"))
_LATENT_IMAGES = (
    (runs.TRAVERSALS_FILE, "Traversals: a row per latent dimension (most variable first), "
                           "moved from its 5% to its 95% quantile over the codes"),
    (runs.INTERPOLATIONS_FILE, "Interpolations: a row per pair of images of different "
                               "labels, straight lines between their codes"))


def run_report(run_dir: str | Path) -> Report:
    """Collect a run directory's tables and figures into a :class:`Report`: a headline of the
    test metrics with traffic-light warnings, per-dimension bar charts, settings as a table,
    links to the diagnostics and variance pages, and the image grids."""
    loaded = runs.read_run(run_dir)
    run_dir, spec, config = loaded.path, loaded.spec, loaded.config
    report = Report(f"ppl_vae run: {run_dir.name}")
    report.text(f"{spec.description or spec.name} Posterior {spec.posterior.name}, prior "
                f"{spec.prior.name}, likelihood {spec.likelihood.name}, {spec.latent_dim} "
                f"latent dimensions, {spec.kl} KL; backend {config.get('backend', '?')}, "
                f"data {config.get('data', {}).get('source', '?')}.")
    which = loaded.parameters_note()
    if which:
        report.text(f"The run holds the {which}.")
    metrics_path = run_dir / runs.METRICS_FILE
    metrics = _own_metrics(metrics_path, loaded.run_id) if metrics_path.exists() else None
    diagnostics_path = run_dir / runs.DIAGNOSTICS_TABLE
    diagnostics = pd.read_csv(diagnostics_path) if diagnostics_path.exists() else None
    split = _headline_split(metrics)
    if metrics is not None and split is not None:
        shown = metrics[metrics["split"] == split]
        report.heading(f"Headline ({split} split)")
        report.table(headline_table(shown, spec.latent_dim), caption=STDERR_CAPTION)
        progress = runs.training_progress(run_dir)
        for level, text in _warnings(shown, diagnostics, params_step=None if progress is None
                                     else progress.params_step):
            report.callout(level, text)
        dims = _per_dimension(shown)
        if dims is not None:
            report.figure(figures.per_dimension_bars(dims), "per-dimension",
                          "KL per latent dimension and activity Var_x E_q[z_u] (Burda et al.)")
        rest = shown[~shown["metric"].str.match(r"(kl|activity|gate_on)_dim_\d+$")]
        report.heading("All metrics").table(rest.drop(columns=["run"]),
                                            caption=f"ppl-vae evaluate; {STDERR_CAPTION}")
    elif diagnostics is not None:
        for level, text in _warnings(None, diagnostics, params_step=None):
            report.callout(level, text)
    else:
        report.callout("caution", "no metrics yet: run ppl-vae evaluate RUN_DIR")
    bdmc_path = run_dir / runs.BDMC_FILE
    if bdmc_path.exists():
        _bdmc_section(report, pd.read_csv(bdmc_path),
                      None if split is None else metrics[metrics["split"] == split])
    report.heading("Settings").table(_settings_table(config), caption="run.json")
    history_path = run_dir / runs.HISTORY_FILE
    if history_path.exists():
        history = pd.read_csv(history_path)
        report.heading("Training").table(
            last_losses(history), caption="last recorded loss (−ELBO, nats per datapoint): "
            "train averaged over the last epoch, as ppl-vae train prints it; valid at the last "
            "evaluation")
        report.figure(figures.training_curves(history), "training_curves",
                      "loss (−ELBO per datapoint) against steps, log scale")
    images = [(run_dir / name, _samples_caption(spec) if name == runs.SAMPLES_FILE else caption)
              for name, caption in _IMAGES if (run_dir / name).exists()]
    if images:
        report.heading("Samples and reconstructions")
        for path, caption in images:
            report.image(path.read_bytes(), path.stem, caption)
    latents = run_dir / runs.LATENTS_FILE
    if latents.exists():
        report.heading("Latent space")
        codes = pd.read_csv(latents)
        colours = (", coloured by label" if (codes["label"] >= 0).any()
                   else " (the data have no labels)")
        report.figure(figures.latent_scatter(codes), "latents",
                      f"E_q[z | x] of {len(codes)} images{colours}")
        for name, caption in _LATENT_IMAGES:
            if (run_dir / name).exists():
                report.image((run_dir / name).read_bytes(), Path(name).stem, caption)
    if diagnostics is not None:
        report.heading("Diagnostics")
        report.link("diagnostics report", f"{runs.DIAGNOSTICS_STEM}.html",
                    ": PSIS k̂, MCMC reference posteriors, gaps, collapse")
        summary = _diagnostics_summary(diagnostics)
        if not summary.empty:
            report.table(summary, caption="ppl-vae diagnose, summarized")
    ratios = run_dir / runs.VARIANCE_DIR / runs.VARIANCE_RATIOS
    if ratios.exists():
        report.heading("Gradient variance")
        report.link("gradient-variance report", f"{runs.VARIANCE_DIR}/{runs.REPORT_STEM}.html")
        report.table(_headline(pd.read_csv(ratios)), caption="ppl-vae variance: headline ratios")
    return report


def _own_metrics(path: Path, run_id: str) -> pd.DataFrame:
    """The rows of ``metrics.csv`` of the run ``run_id`` (a copied folder keeps its id, and
    rows another run left there are not this run's)."""
    try:
        metrics = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise runs.CheckpointError(f"{path} is empty; delete it and run ppl-vae evaluate "
                                   "again") from None
    if "run" not in metrics.columns:
        raise runs.CheckpointError(f"{path} has no 'run' column, so it was not written by "
                                   "ppl-vae evaluate; move it away and evaluate again")
    return metrics[metrics["run"].astype(str) == run_id]


def _samples_caption(spec: Any) -> str:
    """What samples.png shows: decoder means, or pixel draws without a mean; for a cVAE
    (``ppl-vae sample`` without --label) one column per class."""
    shown = ("E[x | z]" if not spec.decoder.masked_layers
             else "draws x ~ p(x | z), pixel by pixel (the decoder has no mean)")
    if spec.condition is None:
        return f"Samples: {shown} for z ~ p(z)"
    classes = spec.condition.classes
    return (f"Samples: {shown.replace('| z', '| z, c')} for z ~ p(z | c); each column is a "
            f"class, c = 0 to {classes - 1} from left to right, each row a draw (unless drawn "
            "with ppl-vae sample --label K: then every image is of class K)")


def _bdmc_section(report: Report, table: pd.DataFrame, rows: pd.DataFrame | None) -> None:
    """How loose is log p(x)? The bounds against T and IS against K on simulated data, read
    beside the headline split's IS figure (``rows``, when there is one)."""
    from ppl_vae.evaluation.bdmc import looseness_note

    report.heading("How loose is log p(x)? (BDMC on simulated data)")
    is_value = None if rows is None else _value(rows, "log_likelihood_is")
    particles = None if rows is None else _value(rows, "num_samples")
    if is_value is not None and particles is not None:
        split = rows["split"].iloc[0]
        report.text(f"The {split}-set IS figure: log p(x) = {is_value[0]:.4g} ± "
                    f"{is_value[1]:.2g} nats (± Monte Carlo) with K = {particles[0]:.0f}.")
    report.text(looseness_note(table))
    report.figure(figures.bdmc_bounds(table), "bdmc",
                  "forward AIS (lower bound) and reverse AIS (upper bound) against T, IS "
                  "against K, on data simulated from the model (Grosse et al. 2015); right: "
                  "the gap and upper bound − IS, paired over datapoints, ± standard error")
    report.table(table, caption="ppl-vae evaluate --bdmc (mean ± stderr over the simulated "
                                "datapoints; seconds include compilation)")


_HEADLINE = (("log_likelihood_is", "log p(x), importance-sampled (nats)", 1.0),
             ("ais_log_likelihood", "log p(x), AIS (nats)", 1.0),
             ("bits_per_dim", "bits/dim", 1.0), ("elbo", "ELBO (nats)", 1.0),
             ("iwae_gap", "log p(x) − ELBO (nats)", 1.0),
             ("rate_bits", "rate KL(q ‖ p), closed form (bits)", 1.0),
             ("rate_bits_mc", "rate KL(q ‖ p), Monte Carlo (bits)", 1.0),
             ("is_ess", "importance ESS", 1.0))


STDERR_CAPTION = ("value ± standard error of the mean, its source named: monte-carlo (the "
                  "estimator's sampling error on these images, not their spread), datapoints "
                  "(resampling the images)")


def _headline_split(metrics: pd.DataFrame | None) -> str | None:
    if metrics is None or metrics.empty:
        return None
    splits = list(dict.fromkeys(metrics["split"]))
    return "test" if "test" in splits else splits[0]


def _value(rows: pd.DataFrame, metric: str) -> tuple[float, float] | None:
    hit = rows[rows["metric"] == metric]
    return None if hit.empty else (float(hit["value"].iloc[0]), float(hit["stderr"].iloc[0]))


def _source(rows: pd.DataFrame, metric: str) -> str:
    """The ``stderr_source`` of a metric ("unnamed" in a metrics.csv from before it existed)."""
    if "stderr_source" not in rows:
        return "unnamed"
    source = rows.loc[rows["metric"] == metric, "stderr_source"].iloc[0]
    return source if isinstance(source, str) and source else "unnamed"


def headline_table(rows: pd.DataFrame, latent_dim: int) -> pd.DataFrame:
    """The headline figures of one split's ``ppl-vae evaluate`` rows (the run report's and
    the command's summary): figure, value ± standard error."""
    out = []
    for metric, label, scale in _HEADLINE:
        got = _value(rows, metric)
        if got is not None:
            value, se = got[0] * scale, got[1] * scale
            if math.isnan(value):  # e.g. the rate of point codes: missing, not 0
                out.append((label, "missing"))
                continue
            source = _source(rows, metric)
            out.append((label, f"{value:.4g}" + ("" if math.isnan(se) else
                                                 f" ± {se:.2g} ({source})")))
    active = _value(rows, "active_units")
    if active is not None:
        out.append(("active units", f"{active[0]:.0f} of {latent_dim}"))
    return pd.DataFrame(out, columns=["figure", "value"])


def _warnings(rows: pd.DataFrame | None, diagnostics: pd.DataFrame | None, *,
              params_step: int | None) -> list[tuple[str, str]]:
    """Traffic lights: stale results, importance ESS, PSIS k̂ bands (judged as
    :mod:`ppl_vae.diagnostics.verdicts` says, like ``compare`` and ``diagnose``), MCMC R-hat."""
    from ppl_vae.diagnostics.verdicts import ess_verdict, khat_values_verdict

    notes = []
    if rows is not None:
        step = _value(rows, runs.STEP_METRIC)
        if step is None:
            notes.append(("caution", "these metrics do not record the training step they were "
                                     "computed at; re-run ppl-vae evaluate to be sure they "
                                     "describe the current parameters"))
        elif params_step is not None and step[0] != params_step:
            notes.append(("bad", f"stale: the metrics were computed at step {step[0]:.0f}, but "
                                 f"the parameters are at step {params_step}; re-run ppl-vae "
                                 "evaluate"))
        ess, k = _value(rows, "is_ess"), _value(rows, "num_samples")
        if ess is not None and k is not None and k[0] > 0:
            notes.append(ess_verdict(ess[0], k[0]))
    if diagnostics is not None:
        khat = diagnostics.loc[(diagnostics["analysis"] == "psis")
                               & (diagnostics["metric"] == "khat"), "value"].to_numpy()
        if khat.size:
            notes.append(khat_values_verdict(khat))
        rhat = diagnostics.loc[(diagnostics["analysis"] == "mcmc")
                               & (diagnostics["metric"] == "r_hat"), "value"].to_numpy()
        if rhat.size:
            worst = float(np.nanmax(rhat))
            level = "bad" if worst > 1.1 else "caution" if worst > 1.01 else "good"
            notes.append((level, f"MCMC reference: max R-hat {worst:.4f}" + (
                "; the chains disagree, so the reference posterior is not trustworthy"
                if level != "good" else "")))
    return notes


def _per_dimension(rows: pd.DataFrame) -> pd.DataFrame | None:
    parts = rows["metric"].str.extract(r"^(kl|activity|gate_on)_dim_(\d+)$")
    keep = parts[0].notna()
    if not keep.any():
        return None
    dims = pd.DataFrame({"kind": parts.loc[keep, 0], "dim": parts.loc[keep, 1].astype(int),
                         "value": rows.loc[keep, "value"]})
    return dims.pivot_table(index="dim", columns="kind", values="value").reset_index()


def _settings_table(config: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for key, value in config.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", str(v)) for k, v in value.items()]
        elif key != "data_fingerprint":
            rows.append((key, str(value)))
    return pd.DataFrame(rows, columns=["setting", "value"])


def _diagnostics_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max of each analysis' metric over datapoints and dimensions."""
    grouped = table.groupby(["analysis", "metric"], sort=False)["value"]
    return grouped.agg(["mean", "min", "max", "count"]).reset_index()


def write_run_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run directory."""
    return run_report(run_dir).write(run_dir, runs.REPORT_STEM)


# --------------------------------------------------------------------------- diagnostics


def diagnostics_page(diagnosis: Any, title: str) -> Report:
    """The tables and figures of a :class:`ppl_vae.diagnostics.Diagnosis`."""
    d = diagnosis
    report = Report(title)
    report.heading("PSIS k̂ of the importance weights")
    report.text("Per datapoint, S draws z ~ q(z|x) weighted by log p(x,z) − log q(z|x); "
                "Pareto k̂ < 0.5 good, 0.5–0.7 ok, > 0.7 unreliable (Yao et al. 2018); with "
                "S draws the reliable range ends at min(1 − 1/log10 S, 0.7) (Vehtari et al. "
                "2024).")
    report.callout(*d.khat_verdict)
    report.table(d.khat_summary, caption="datapoints per k̂ band")
    report.figure(figures.khat_histogram(d.psis.khat, d.psis.num_samples), "khat")
    if d.reference is not None:
        ref = d.reference
        report.heading("MCMC reference posteriors")
        report.text(f"NUTS on p(z|x) with decoder and prior fixed: "
                    f"{ref.samples['z'].shape[0]} chains × {ref.samples['z'].shape[1]} draws; "
                    f"max R-hat {ref.max_rhat:.4f}, min bulk ESS {ref.min_ess_bulk:.0f}, "
                    f"{ref.num_divergent} divergent transitions.")
        report.table(ref.summary, caption="ArviZ convergence summary")
        report.table(d.comparison, caption="guide vs MCMC per dimension of z")
        report.table(d.distances, caption="energy distance guide vs MCMC (null: MCMC half "
                                          "vs half)")
        first = ref.datapoints[0]
        report.figure(figures.trace_plot(ref.inference_data, first, d.pair_dims(first)),
                      "trace", caption=f"datapoint {first}")
        report.figure(figures.rank_plot(ref.inference_data, first), "rank",
                      caption=f"datapoint {first}")
        guide = d.guide_reference_inference_data()
        for label in ref.datapoints:
            report.figure(figures.pair_plot(guide, ref.inference_data, label,
                                            d.pair_dims(label)), f"pair-{label}")
    if d.gaps is not None:
        report.heading("Inference gaps")
        report.table(d.gaps.table, caption="per datapoint, nats")
        report.figure(figures.gap_bars(d.gaps.table), "gaps")
    if d.collapse is not None:
        report.heading("Posterior collapse")
        report.table(d.collapse, caption="KL per dimension and active units")
        report.figure(figures.collapse_bars(d.collapse), "collapse")
    if d.history is not None and {"step", "loss"} <= set(d.history.columns):
        report.heading("Training history")
        report.figure(figures.training_curves(d.history), "history")
    if d.notes:
        report.heading("Notes")
        for note in d.notes:
            report.text(note)
    return report


# --------------------------------------------------------------------------- gradient variance


def _headline(ratios: pd.DataFrame) -> pd.DataFrame:
    """One row per ratio and target: K = 1 (for dreg / iwae the largest K), last stage."""
    if ratios.empty:
        return ratios
    rows = []
    for (target, ratio), sub in ratios.groupby(["target", "ratio"], sort=False):
        sub = sub[sub["step"] == sub["step"].max()]
        k = sub["particles"].max() if ratio.startswith("dreg") else sub["particles"].min()
        sub = sub[sub["particles"] == k]
        row = {"target": target, "ratio": ratio, "K": int(k), "stage": sub["stage"].iloc[0]}
        for group in ("encoder", "decoder", "codes"):
            hit = sub[sub["group"] == group]
            if not hit.empty:
                row[f"{group} variance ratio"] = hit["variance_ratio"].iloc[0]
                row[f"{group} cost ratio"] = hit["cost_ratio"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def variance_page(result: Any) -> Report:
    """The report of a gradient-variance study (:class:`ppl_vae.variance.StudyResult`):
    settings, headline ratios, figures, families, skipped configurations."""
    s = result.settings
    report = Report("Gradient variance of ELBO estimators")
    report.text(
        f"Each configuration takes N = {s['num_draws']} independent gradient draws at fixed "
        f"parameters on one minibatch of {s['batch_size']} points, seed {s['seed']}, backend "
        f"{s['backend']}; machine: {machine_description()}. Variance is the trace of the "
        "gradient covariance over a parameter group; SNR = |mean| / std per coordinate "
        "(Rainforth et al. 2018), summarized by its median; cost-adjusted variance is "
        "variance × seconds per draw. score-baseline draws use a baseline warmed up at the "
        "fixed parameters on the same minibatch, then frozen: its per-datapoint average is "
        "then tuned to these datapoints, an optimistic case next to training, where the "
        "minibatch changes every step (compare the training curves).")
    for note in result.notes:
        report.text(note)
    ratios = result.ratios
    if not ratios.empty:
        report.heading("Headline ratios")
        report.table(_headline(ratios), caption="variance (and cost-adjusted variance) of one "
                     "estimator over another, last stage; > 1 means the first is noisier")
    last = result.groups
    if not last.empty:
        last = last[last["step"] == last.groupby("target")["step"].transform("max")]
        for target, df in last.groupby("target", sort=False):
            report.heading(f"{target}: variance and SNR against particles")
            report.figure(figures.variance_vs_particles(df, "variance", "total variance"),
                          f"{target}-variance", "total gradient variance per group (log-log, ±2 "
                          "standard errors over the draws); a dashed line marked (= other) has "
                          "exactly the values of the other estimator, drawn beneath it")
            report.figure(figures.variance_vs_particles(df, "snr", "median SNR"), f"{target}-snr",
                          "median coordinate SNR per group (log-log)")
            k = df["particles"].min()
            report.figure(figures.snr_boxplots(df[df["particles"] == k]), f"{target}-snr-box",
                          f"SNR of the coordinates per estimator, K = {k}")
        stages = result.groups.groupby("target")["stage"].nunique()
        for target in stages[stages > 1].index:
            df = result.groups[(result.groups["target"] == target)
                               & (result.groups["particles"] == result.groups["particles"].min())]
            report.heading(f"{target}: over training")
            report.figure(figures.variance_over_training(df), f"{target}-stages",
                          "total variance at the checkpoints (K = smallest)")
        k1 = last[last["particles"] == last["particles"].min()]
        families = k1.pivot_table(index=["target", "family", "group"], columns="estimator",
                                  values="variance", sort=False).reset_index()
        families = families.rename_axis(columns=None)  # no empty "estimator" header row
        report.heading("Posterior families")
        report.table(families, caption="total variance per group at the last stage, "
                     "K = smallest; masked codes: Bernoulli gates need score-function terms, "
                     "relaxed gates are reparameterized")
    if not result.training.empty:
        report.heading("Training with each estimator")
        for target, df in result.training.groupby("target", sort=False):
            report.figure(figures.estimator_training_curves(df), f"{target}-training",
                          f"{target}: loss against steps and wall time (iwae and dreg: "
                          "−IWAE bound with their K particles; the others: −ELBO)")
    if not result.skipped.empty:
        report.heading("Skipped configurations and diverged training")
        report.table(result.skipped[["target", "stage", "estimator", "reason"]])
    return report


# --------------------------------------------------------------------------- comparisons


COMPARE_METRICS = (
    ("log_px", "log p(x), nats"), ("bits_per_dim", "bits/dim"), ("elbo", "ELBO, nats"),
    ("iwae_gap", "log p(x) − ELBO"), ("rate_bits", "rate (KL), bits"),
    ("active_units", "active units"), ("gate_on_fraction", "gates on"),
    ("reconstruction_mse", "reconstruction MSE"), ("khat_mean", "mean k̂"),
    ("khat_unreliable_fraction", "k̂ > 0.7"), ("sample_inception_score", "classifier score"),
    ("sample_confidence", "sample confidence"), ("nn_distance_samples", "NN distance"),
    ("train_seconds", "train s"))
"""The comparison table's columns: metric name in the grid table, and its header."""


def summary_wide(summary: pd.DataFrame, marker: str = "★") -> pd.DataFrame:
    """One row per :data:`COMPARE_METRICS` entry present, one "mean ± se" column per spec (the
    combined standard error, :func:`ppl_vae.compare.summary.summarize`); the best spec of
    each row carries ``marker``; a figure the importance verdict flags carries ``[bad]`` or
    ``[caution]`` beside it."""
    order = list(dict.fromkeys(summary["spec"]))
    rows = []
    for metric, header in COMPARE_METRICS:
        hits = summary[summary["metric"] == metric].set_index("spec")
        if hits.empty:
            continue
        row = {"metric": header}
        for spec in order:
            if spec not in hits.index:
                row[spec] = ""
                continue
            hit = hits.loc[spec]
            se = hit["se_combined"]
            text = f"{hit['mean']:.4g}" + ("" if pd.isna(se) else f" ± {se:.2g}")
            if hit["flag"]:
                text += f" [{hit['flag']}]"
            row[spec] = f"{text} {marker}" if hit["best"] else text
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", *order])


SUMMARY_CAPTION = ("mean ± standard error of the mean over seeds and datapoints combined "
                   "(in quadrature; seeds alone for figures without a per-datapoint error); "
                   "{marker} best per row, none where the best is flagged bad; [bad] / [caution]: "
                   "the importance verdict (PSIS k̂, ESS) of that spec; per-source terms in "
                   "summary.csv")


class CellFolder(NamedTuple):
    """A grid cell's run folder as the comparison page shows it (the grid says where it is
    and whether it finished)."""

    key: str
    spec: str
    seed: int
    folder: Path
    done: bool


def compare_page(result: Any, out: str | Path, cells: Sequence[CellFolder] = ()) -> Report:
    """The comparison report of a :class:`ppl_vae.compare.GridResult`: settings, the table
    (mean ± se over seeds, best marked ★), paired differences with a forest plot, the
    learning curves of all cells and one sample grid per spec."""
    out = Path(out)
    s = result.settings
    report = Report("Posterior × prior comparison")
    budget = (f"{s.get('num_steps')} steps" if s.get("num_steps") else
              f"{s.get('num_epochs')} epochs" if s.get("num_epochs") else
              "each spec's [training] steps")
    report.text(f"{len(s.get('specs', []))} specs × {len(s.get('seeds', []))} seeds "
                f"(seeds {s.get('seeds')}) on {s.get('dataset')} (split seed "
                f"{s.get('data_seed')}), backend {s.get('backend')}, budget {budget}, batch "
                f"{s.get('batch_size') or 'spec default'}; evaluated on "
                f"{s.get('eval_points') or 'all'} {s.get('split', 'test')} images with "
                f"K = {s.get('num_samples')} importance samples. Machine: {machine_description()}.")
    cell_seconds = result.table[result.table["metric"].isin(("train_seconds",
                                                             "eval_seconds"))]["value"].sum()
    if "wall_seconds" in s:
        report.text(f"Wall time of this invocation: {s['wall_seconds']:.1f} s on the "
                    f"{s.get('executor')} executor ({len(result.ran)} cells run, "
                    f"{len(result.skipped)} already finished); the finished cells' training "
                    f"and evaluation took {cell_seconds:.0f} s in all (process starts not "
                    "counted).")
    if result.table.empty:
        report.callout("bad", "no cell has finished: nothing to compare yet")
        return report
    estimators = result.table.drop_duplicates("spec")[["spec", "estimator"]]
    report.heading("Summary over seeds")
    report.table(summary_wide(result.summary),
                 caption=SUMMARY_CAPTION.format(marker="★") + "; log p(x) estimators per "
                                                            "spec below")
    flagged = (result.summary[result.summary["flag"] != ""]
               .drop_duplicates("spec")[["spec", "flag", "flag_reason"]])
    for spec, level, reason in flagged.itertuples(index=False):
        report.callout(level, f"{spec}: {reason}; its log p(x) is a lower bound of unknown "
                              "looseness" if level == "bad" else f"{spec}: {reason}")
    report.table(estimators, caption="log p(x) estimator of each spec (encoder-free models "
                                     "have no q(z|x) on test data: AIS from the prior)")
    if (estimators["estimator"].str.startswith("AIS")).any():
        report.callout("caution", "AIS and importance sampling are both stochastic lower "
                                  "bounds on log p(x); a difference between an AIS row and "
                                  "an IS row mixes model and estimator")
    if not result.paired.empty:
        report.heading(f"Paired differences against {result.baseline}")
        report.text("Per test image, log p(x) of the spec minus that of the baseline trained "
                    "with the same seed; standard errors of the mean: se_datapoints over the "
                    "seed-averaged differences, se_seeds over the per-seed means, se_combined "
                    "both in quadrature (the one to quote).")
        report.table(result.paired, caption="paired log p(x) differences, nats per image")
        report.figure(figures.forest_plot(result.paired), "forest",
                      "paired differences with ±2 combined standard errors")
    histories = []
    for cell in cells:
        path = cell.folder / runs.HISTORY_FILE
        if path.exists():
            histories.append(pd.read_csv(path).assign(spec=cell.spec, seed=cell.seed))
    if histories:
        report.heading("Learning curves")
        report.figure(figures.grid_learning_curves(pd.concat(histories, ignore_index=True)),
                      "curves", "every cell's training loss (thin lines, every logged "
                      "step) and validation loss (dots); colour: spec, line style: seed")
    shown = {}
    for cell in cells:
        path = cell.folder / runs.SAMPLES_FILE
        if cell.spec not in shown and path.exists():
            shown[cell.spec] = (cell, path)
    if shown:
        report.heading("Samples (first seed of each spec)")
        for name, (cell, path) in shown.items():
            report.image(path.read_bytes(), f"samples-{name}", f"{name}, seed {cell.seed}")
    report.heading("Cells")
    for cell in cells:
        page = cell.folder / f"{runs.REPORT_STEM}.html"
        if page.exists():
            report.link(cell.key, page.relative_to(out).as_posix(),
                        f" ({cell.spec}, seed {cell.seed})")
    report.text("Tables: table.csv (tidy, per cell), summary.csv, paired.csv, "
                "paired_seeds.csv, failures.csv; per-datapoint log p(x) in "
                "cells/KEY/per_datapoint.csv.")
    if not result.failures.empty:
        report.heading("Failed cells")
        report.callout("bad", f"{len(result.failures)} cells failed twice")
        report.table(result.failures)
    return report


def write_compare_report(result: Any, out: str | Path,
                         cells: Sequence[CellFolder] = ()) -> tuple[Path, Path]:
    """Write each finished cell's run report, then ``report.md`` / ``report.html`` of the
    grid into ``out``."""
    for cell in cells:
        if cell.done:
            write_run_report(cell.folder)
    return compare_page(result, out, cells).write(out, runs.REPORT_STEM)
