"""One judgement of importance weights, shared by the run report, ``compare`` and ``diagnose``.

Two diagnostics say whether an importance-sampled log p(x) can be trusted:

* **PSIS k̂** per datapoint (Vehtari et al. 2024): k̂ > 0.7 means the weights' tail is so
  heavy that the estimate is unreliable whatever K; 0.5-0.7 is ok; below 0.5 good. Over a
  set of datapoints the verdict is *bad* when more than 10% are unreliable, *caution* when
  any is (or most are only ok), else *good*.
* **Importance ESS** (Kish's (Σw)² / Σw², the mean over datapoints). It is judged on its
  absolute size, not as a share of K: the share falls as K grows even when the estimate
  improves, so a share rule calls more particles worse. Fewer than 10 effective draws is
  *bad* (log p(x) rests on a handful of weights), fewer than 100 *caution*.

:func:`worst` combines verdicts; :data:`IMPORTANCE_METRICS` are the figures a bad verdict
concerns (a comparison gives them no "best" mark).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ppl_vae.diagnostics.psis import KHAT_GOOD, KHAT_OK

__all__ = ["ESS_BAD", "ESS_CAUTION", "IMPORTANCE_METRICS", "KHAT_BAD_FRACTION", "LEVELS",
           "Verdict", "ess_verdict", "khat_values_verdict", "khat_verdict", "worst"]

LEVELS = ("good", "caution", "bad")
KHAT_BAD_FRACTION = 0.1
"""More than this fraction of datapoints with k̂ > 0.7 makes the verdict "bad"."""
ESS_BAD, ESS_CAUTION = 10.0, 100.0
"""Mean importance ESS below these: "bad", "caution"."""
IMPORTANCE_METRICS = frozenset({"log_px", "log_likelihood_is", "nll_nats", "bits_per_dim",
                                "iwae_gap"})
"""Figures computed from the importance weights, which their verdict qualifies."""


class Verdict(NamedTuple):
    """``level`` is one of :data:`LEVELS`; ``text`` says what was judged and why."""

    level: str
    text: str


def khat_verdict(unreliable: float, ok: float = 0.0, *, count: int | None = None) -> Verdict:
    """The verdict of a set of datapoints of which the fraction ``unreliable`` has k̂ > 0.7
    and ``ok`` has 0.5 ≤ k̂ ≤ 0.7 (``count``: how many datapoints, for the text)."""
    level = ("bad" if unreliable > KHAT_BAD_FRACTION else
             "caution" if unreliable > 0 or ok > 0.5 else "good")
    over = "" if count is None else f" over {count} datapoints"
    return Verdict(level, f"PSIS k̂{over}: {unreliable:.0%} unreliable (> {KHAT_OK}), "
                          f"{ok:.0%} ok ({KHAT_GOOD}–{KHAT_OK})")


def khat_values_verdict(khat: Any) -> Verdict:
    """:func:`khat_verdict` of per-datapoint k̂ values."""
    khat = np.asarray(khat, dtype=np.float64)
    unreliable = float(np.mean(khat > KHAT_OK))
    ok = float(np.mean((khat >= KHAT_GOOD) & (khat <= KHAT_OK)))
    return khat_verdict(unreliable, ok, count=khat.size)


def ess_verdict(ess: float, num_samples: float) -> Verdict:
    """The verdict of a mean importance ESS of ``ess`` effective draws out of K =
    ``num_samples``."""
    level = "bad" if ess < ESS_BAD else "caution" if ess < ESS_CAUTION else "good"
    reading = {"bad": "log p(x) rests on a handful of weights: a loose, noisy lower bound",
               "caution": "few effective weights: read log p(x) with care",
               "good": "weights well spread"}[level]
    return Verdict(level, f"importance ESS {ess:.3g} of K = {num_samples:.0f}: {reading}")


def worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The most severe of ``verdicts`` (the first of equals); ``None`` when there are none."""
    verdicts = list(verdicts)
    if not verdicts:
        return None
    return max(verdicts, key=lambda v: LEVELS.index(v.level))
