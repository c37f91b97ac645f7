"""Summaries of a grid against hand computations: mean ± se over seeds, datapoints and
combined, importance flags, paired differences."""

import math

import numpy as np
import pandas as pd
import pytest

from ppl_vae.compare.summary import paired_differences, summarize


def test_summary_mean_se_and_best_match_a_hand_computation():
    table = pd.DataFrame({
        "spec": ["a"] * 3 + ["b"] * 3,
        "seed": [0, 1, 2] * 2,
        "metric": ["log_px"] * 6,
        "value": [-100.0, -102.0, -101.0, -99.0, -99.5, -98.5],
        "stderr": math.nan, "stderr_source": "",
    })
    table = pd.concat([table, table.assign(metric="bits_per_dim", value=[1.0, 1.2, 1.1, 2, 2, 2])])
    summary = summarize(table).set_index(["spec", "metric"])
    # a: mean -101, sample sd 1 (deviations 1, -1, 0 over ddof = 1), se = 1 / sqrt(3)
    assert summary.loc[("a", "log_px"), "mean"] == -101.0
    assert summary.loc[("a", "log_px"), "se_seeds"] == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    # b: mean -99, deviations 0, -0.5, 0.5: sd 0.5, se 0.5 / sqrt(3)
    assert summary.loc[("b", "log_px"), "se_seeds"] == pytest.approx(0.5 / math.sqrt(3), rel=1e-12)
    assert summary.loc[("b", "log_px"), "best"] and not summary.loc[("a", "log_px"), "best"]
    # lower is better for bits/dim
    assert summary.loc[("a", "bits_per_dim"), "best"]
    assert summary.loc[("b", "bits_per_dim"), "se_seeds"] == 0.0
    assert (summary["num_seeds"] == 3).all()
    # no per-datapoint errors given: the combined error is the seeds' alone
    np.testing.assert_array_equal(summary["se_combined"], summary["se_seeds"])
    assert (summary["flag"] == "").all()


def _rows(spec, metric, values, stderr=math.nan, source=""):
    return pd.DataFrame({"spec": spec, "seed": np.arange(len(values)), "metric": metric,
                         "value": values, "stderr": stderr, "stderr_source": source})


def test_within_and_combined_errors_follow_their_sources():
    """log p(x): sd over images of the seed-averaged values / √N; datapoint errors of other
    metrics: their root mean square over seeds; Monte Carlo errors: √Σσ² / S; combined: the
    quadrature sum with the seeds' term."""
    table = pd.concat([_rows("a", "log_px", [-10.0, -12.0]),
                       _rows("a", "reconstruction_mse", [1.0, 1.0], [0.3, 0.4], "datapoints"),
                       _rows("a", "rate_bits", [5.0, 7.0], [0.3, 0.4], "monte-carlo")])
    points = pd.concat([_points("a", 0, np.array([-9.0, -11.0, -10.0])),
                        _points("a", 1, np.array([-11.0, -13.0, -12.0]))])
    summary = summarize(table, points).set_index("metric")
    # seed-averaged per image: -10, -12, -11: sd 1, se 1/√3; seeds -10, -12: se 1
    log_px = summary.loc["log_px"]
    assert log_px["within_source"] == "datapoints"
    assert log_px["se_within"] == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    assert log_px["se_seeds"] == pytest.approx(1.0, rel=1e-12)
    assert log_px["se_combined"] == pytest.approx(math.sqrt(1 + 1 / 3), rel=1e-12)
    mse = summary.loc["reconstruction_mse"]
    assert mse["se_within"] == pytest.approx(math.sqrt((0.09 + 0.16) / 2), rel=1e-12)
    assert mse["se_combined"] == pytest.approx(mse["se_within"], rel=1e-12)  # seeds agree
    rate = summary.loc["rate_bits"]
    assert rate["within_source"] == "monte-carlo"
    assert rate["se_within"] == pytest.approx(0.5 / 2, rel=1e-12)
    assert rate["se_combined"] == pytest.approx(math.hypot(1.0, 0.25), rel=1e-12)


def test_a_spec_flagged_bad_by_its_importance_weights_gets_no_star():
    """b has the higher log p(x) but k̂ > 0.7 on 90% of its images: flagged bad, so its
    figure gets no best mark, and neither does a's worse one (a worse figure is not promoted
    because a better one is unreliable); the flag rides on the importance figures only, and
    the wide table shows it beside the figure."""
    from ppl_vae.reports.pages import summary_wide

    table = pd.concat([
        _rows("a", "log_px", [-101.0, -101.2]), _rows("b", "log_px", [-99.0, -99.4]),
        _rows("a", "elbo", [-110.0, -110.0]), _rows("b", "elbo", [-108.0, -108.0]),
        _rows("a", "khat_unreliable_fraction", [0.0, 0.0]),
        _rows("b", "khat_unreliable_fraction", [0.9, 0.9]),
        _rows("a", "is_ess", [150.0, 150.0]), _rows("b", "is_ess", [150.0, 150.0]),
        _rows("a", "num_samples", [1000.0, 1000.0]), _rows("b", "num_samples", [1000.0, 1000.0])])
    summary = summarize(table).set_index(["spec", "metric"])
    assert summary.loc[("b", "log_px"), "flag"] == "bad"
    assert "90% unreliable" in summary.loc[("b", "log_px"), "flag_reason"]
    assert not summary.loc[("a", "log_px"), "best"] and not summary.loc[("b", "log_px"), "best"]
    assert summary.loc[("b", "elbo"), "flag"] == "" and summary.loc[("b", "elbo"), "best"]
    wide = summary_wide(summary.reset_index()).set_index("metric")
    assert wide.loc["log p(x), nats", "b"].endswith("[bad]")
    assert not wide.loc["log p(x), nats", "a"].endswith("★")
    # only caution (5% of images unreliable): the best figure keeps its mark, with the flag
    table.loc[(table["spec"] == "b") & (table["metric"] == "khat_unreliable_fraction"),
              "value"] = 0.05
    summary = summarize(table).set_index(["spec", "metric"])
    assert summary.loc[("b", "log_px"), "flag"] == "caution" and summary.loc[("b", "log_px"),
                                                                             "best"]
    wide = summary_wide(summary.reset_index()).set_index("metric")
    assert wide.loc["log p(x), nats", "b"].endswith("[caution] ★")


def _points(spec, seed, values, rows=None):
    n = len(values)
    return pd.DataFrame({"spec": spec, "seed": seed, "datapoint": np.arange(n),
                         "source_row": np.arange(n) + 7 if rows is None else rows,
                         "log_px": values})


def test_paired_differences_match_a_hand_computation():
    base0, base1 = np.array([-10.0, -20.0, -30.0, -40.0]), np.array([-11.0, -19.0, -31.0, -41.0])
    d0, d1 = np.array([1.0, 2.0, 3.0, 6.0]), np.array([0.0, 1.0, 1.0, 2.0])
    frame = pd.concat([_points("base", 0, base0), _points("base", 1, base1),
                       _points("new", 0, base0 + d0), _points("new", 1, base1 + d1)])
    summary, by_seed = paired_differences(frame, "base")
    by_seed = by_seed.set_index("seed")
    # seed 0: mean 3, sample variance ((-2)² + (-1)² + 0 + 3²) / 3 = 14/3, se = sqrt(14/3 / 4)
    assert by_seed.loc[0, "mean_diff"] == 3.0
    assert by_seed.loc[0, "se"] == pytest.approx(math.sqrt(14 / 3 / 4), rel=1e-12)
    # seed 1: mean 1, variance (1 + 0 + 0 + 1) / 3, se = sqrt(2/3 / 4)
    assert by_seed.loc[1, "se"] == pytest.approx(math.sqrt(2 / 3 / 4), rel=1e-12)
    row = summary.iloc[0]
    assert row["mean_diff"] == 2.0
    # seed means 3 and 1: sd sqrt(2), se over seeds sqrt(2) / sqrt(2) = 1
    assert row["se_seeds"] == pytest.approx(1.0, rel=1e-12)
    # seed-averaged differences 0.5, 1.5, 2, 4: mean 2, variance (2.25+.25+0+4)/3, se /sqrt(4)
    assert row["se_datapoints"] == pytest.approx(math.sqrt(6.5 / 3 / 4), rel=1e-12)
    assert row["se_combined"] == pytest.approx(math.sqrt(1.0 + 6.5 / 3 / 4), rel=1e-12)
    assert row["fraction_better"] == 1.0 and row["num_datapoints"] == 4
    # the baseline itself is not paired with itself
    assert summary["spec"].tolist() == ["new"]


def test_pairing_refuses_cells_evaluated_on_different_datapoints():
    frame = pd.concat([_points("base", 0, [1.0, 2.0]),
                       _points("new", 0, [1.0, 2.0], rows=np.array([100, 101]))])
    with pytest.raises(ValueError, match="different datapoints"):
        paired_differences(frame, "base")
    with pytest.raises(ValueError, match="baseline 'nope' has no finished cells"):
        paired_differences(frame, "nope")
