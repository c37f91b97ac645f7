"""Interleaved timing: loops compared round by round (ABAB...), so load drift cancels.

On a shared machine the speed of the same code drifts by 2x within minutes; timing loop A for
twelve epochs and then loop B turns that drift into a false ratio. :func:`interleave` runs one
epoch (or one block) of each loop in turn, rotating which goes first, and keeps every time;
:func:`summarize` reports per loop the median seconds with the interquartile range, and per
pair of loops the median of the *per-round* ratios, each taken between two measurements made
moments apart under the same load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

TIMING_COLUMNS = ("round", "loop", "seconds")


def interleave(loops: Mapping[str, Callable[[int], object]], rounds: int,
               warmup: int = 1) -> pd.DataFrame:
    """Call ``loops[name](r)`` for r = 0 … warmup + rounds − 1, one call of each loop per
    round, the order rotated every round; tidy times of the rounds after the warm-up.

    Returns columns ``round`` (0-based after the warm-up), ``loop`` and ``seconds``.
    """
    names = list(loops)
    rows = []
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            loops[name](r)
            seconds = time.perf_counter() - start
            if r >= warmup:
                rows.append((r - warmup, name, seconds))
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS))


def summarize(times: pd.DataFrame, pairs: list[tuple[str, str]]) -> tuple[pd.DataFrame,
                                                                           pd.DataFrame]:
    """Per loop: median seconds, quartiles, rounds. Per pair (a, b): the median over rounds of
    seconds(a) / seconds(b) with its quartiles (``ratio`` > 1: a is slower)."""
    by_loop = times.groupby("loop", sort=False)["seconds"]
    loops = pd.DataFrame({"median_s": by_loop.median(), "q25_s": by_loop.quantile(0.25),
                          "q75_s": by_loop.quantile(0.75), "rounds": by_loop.size()})
    wide = times.pivot(index="round", columns="loop", values="seconds")
    rows = []
    for a, b in pairs:
        r = (wide[a] / wide[b]).to_numpy()
        rows.append({"loop": a, "versus": b, "ratio": float(np.median(r)),
                     "ratio_q25": float(np.quantile(r, 0.25)),
                     "ratio_q75": float(np.quantile(r, 0.75)), "rounds": int(r.size)})
    return loops.reset_index(), pd.DataFrame(rows)
