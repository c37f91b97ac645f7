import numpy as np
import pandas as pd
import pytest

from ppl_vae.bench.timing import interleave, summarize


def test_interleave_rotates_the_order_and_drops_the_warmup():
    calls = []
    loops = {name: (lambda r, name=name: calls.append((r, name))) for name in "ABC"}
    times = interleave(loops, rounds=3, warmup=1)
    assert calls == [(0, "A"), (0, "B"), (0, "C"), (1, "B"), (1, "C"), (1, "A"),
                     (2, "C"), (2, "A"), (2, "B"), (3, "A"), (3, "B"), (3, "C")]
    assert list(times.columns) == ["round", "loop", "seconds"]
    assert sorted(times["round"].unique()) == [0, 1, 2]
    assert (times.groupby("loop").size() == 3).all()
    assert (times["seconds"] >= 0).all()


def test_summarize_takes_the_median_of_per_round_ratios():
    # load drifts 1x, 3x, 2x, 5x over the rounds; A costs twice B within every round, so the
    # per-round ratio is exactly 2 while the ratio of the medians would not be
    drift = np.array([1.0, 3.0, 2.0, 5.0])
    times = pd.DataFrame({"round": np.tile(np.arange(4), 2), "loop": ["A"] * 4 + ["B"] * 4,
                          "seconds": np.concatenate([2 * drift, drift])})
    times.loc[times.index[-1], "seconds"] = 2.0  # B in the slowest round ran unloaded
    loops, ratios = summarize(times, [("A", "B")])
    per_round = np.array([2.0, 2.0, 2.0, 5.0])
    assert ratios["ratio"].iloc[0] == pytest.approx(np.median(per_round))
    assert ratios["ratio_q25"].iloc[0] == pytest.approx(np.quantile(per_round, 0.25))
    assert loops.set_index("loop").loc["A", "median_s"] == pytest.approx(np.median(2 * drift))
    assert list(loops["rounds"]) == [4, 4]
