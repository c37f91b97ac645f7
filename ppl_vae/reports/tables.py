"""Small tables the report pages show, shaped from stored ones (nothing is recomputed)."""

from __future__ import annotations

import pandas as pd


def last_losses(history: pd.DataFrame) -> pd.DataFrame:
    """The last loss of each split of a training history, as ``ppl-vae train`` prints it: the
    training loss averaged over the last epoch (not its last minibatch), the validation loss
    of the last evaluation. Columns ``split, step, epoch, loss, wall_time``."""
    rows = []
    for split, part in history.sort_values("step").groupby("split", sort=False):
        last = part.iloc[-1]
        loss = last["loss"]
        if split == "train" and "epoch" in part:
            loss = part.loc[part["epoch"] == last["epoch"], "loss"].mean()
        rows.append({"split": split, "step": last["step"],
                     "epoch": last["epoch"] if "epoch" in part else None, "loss": loss,
                     "wall_time": last["wall_time"]})
    return pd.DataFrame(rows, columns=["split", "step", "epoch", "loss", "wall_time"])
