"""One judgement of importance weights: the thresholds, and the same verdict everywhere."""

import numpy as np
import pandas as pd
import pytest

from ppl_vae.diagnostics.verdicts import (
    ess_verdict,
    khat_values_verdict,
    khat_verdict,
    worst,
)


def test_khat_verdict_bands():
    # 2 of 10 above 0.7: 20% > 10% is bad; 1 of 20 (5%) only caution; all below 0.5 good
    assert khat_values_verdict([0.8, 0.9] + [0.2] * 8).level == "bad"
    assert khat_values_verdict([0.8] + [0.2] * 19).level == "caution"
    assert khat_values_verdict([0.6] * 6 + [0.2] * 4).level == "caution"  # most only ok
    assert khat_values_verdict([0.1, 0.49]).level == "good"
    assert khat_values_verdict([0.8, 0.9] + [0.2] * 8).text.startswith(
        "PSIS k̂ over 10 datapoints: 20% unreliable")
    assert khat_verdict(0.1).level == "caution" and khat_verdict(0.11).level == "bad"


def test_ess_is_judged_on_its_size_so_more_particles_never_look_worse():
    """The old rule judged ESS / K: 8 of 1000 (0.8%) was bad but 5.4 of 200 (2.7%) only
    caution. On the absolute size both are bad, and an ESS that grows with K can only
    improve its verdict."""
    assert ess_verdict(8.0, 1000).level == "bad"
    assert ess_verdict(5.4, 200).level == "bad"
    assert ess_verdict(99.0, 100_000).level == "caution"
    assert ess_verdict(100.0, 100).level == "good"
    levels = ["good", "caution", "bad"]
    ranks = [levels.index(ess_verdict(e, k).level) for e, k in [(5, 200), (40, 1000),
                                                                (300, 5000)]]
    assert ranks == sorted(ranks, reverse=True)


def test_worst_picks_the_most_severe():
    verdicts = [khat_verdict(0.0), ess_verdict(50, 1000), ess_verdict(500, 1000)]
    assert worst(verdicts).level == "caution"
    assert worst([]) is None


def test_the_run_report_and_diagnose_give_the_same_verdict():
    """The run report's traffic light and the diagnostics page both call the same rule."""
    from ppl_vae.reports.pages import _warnings

    khat = np.array([0.8, 0.9, 0.95] + [0.3] * 7)
    diagnostics = pd.DataFrame({"analysis": "psis", "datapoint": np.arange(10),
                                "latent_dim": -1, "metric": "khat", "value": khat,
                                "stderr": np.nan})
    rows = pd.DataFrame({"run": "r", "split": "test",
                         "metric": ["is_ess", "num_samples", "checkpoint_step"],
                         "value": [5.4, 200.0, 10.0], "stderr": np.nan, "stderr_source": ""})
    notes = _warnings(rows, diagnostics, params_step=10)
    assert (notes[0][0], notes[1][0]) == ("bad", "bad")
    assert tuple(notes[1]) == tuple(khat_values_verdict(khat))
    assert tuple(notes[0]) == tuple(ess_verdict(5.4, 200))


@pytest.mark.parametrize("fraction,level", [(0.0, "good"), (0.05, "caution"), (0.5, "bad")])
def test_compare_flags_use_the_same_rule(fraction, level):
    from ppl_vae.compare.summary import importance_verdict

    rows = pd.DataFrame({"metric": ["khat_unreliable_fraction", "is_ess", "num_samples"],
                         "value": [fraction, 500.0, 1000.0]})
    assert importance_verdict(rows).level == level
