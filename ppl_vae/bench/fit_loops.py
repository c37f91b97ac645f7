"""``ppl_vae.fit``'s own training loop, one epoch at a time, for interleaved timing.

:class:`FitLoop` builds the engine ``fit`` builds (``training.svi``) and drives it through
``fit``'s driver (:class:`~ppl_vae.training.loop.TrainingDriver`, what ``run_training`` runs)
one epoch per call: what is timed is exactly ``fit``'s per-epoch work (the chunked steps, the
NaN and divergence guards, the history), without its one-off set-up and finish (checks, run
directory, the final history table) and without validation or checkpoints, which the
references do not have either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppl_vae.estimators import Reparam
from ppl_vae.training import batches
from ppl_vae.training.loop import Plan, TrainingDriver
from ppl_vae.training.schedules import LRSchedule
from ppl_vae.training.selection import Selection
from ppl_vae.training.svi import MAX_CHUNK, _make_engine


class FitLoop:
    """``fit(vae, x, batch_size=B, learning_rate=lr, estimator="reparam", seed=seed)`` for
    ``epochs`` epochs, an epoch per :meth:`run_epoch`."""

    def __init__(self, vae: Any, x: np.ndarray, *, batch_size: int, learning_rate: float,
                 seed: int, epochs: int, device: str | None = None) -> None:
        self.name = f"ppl_vae.fit, {'Pyro' if vae.backend == 'pyro' else 'NumPyro'}"
        data = batches.prepare_training_data(vae.spec, x, None, seed=seed)
        steps = batches.steps_per_epoch(data.num_data, batch_size)
        self.steps_per_epoch = steps
        max_chunk = min(MAX_CHUNK, steps)
        plan = Plan(total_steps=epochs * steps, batch_size=batch_size, steps_per_epoch=steps,
                    seed=seed, eval_every=None, checkpoint_every=None, max_chunk=max_chunk,
                    learning_rate=learning_rate)
        engine = _make_engine(vae, "adam", LRSchedule(learning_rate), estimator=Reparam(),
                              eval_estimator=Reparam(), num_particles=1, seed=seed,
                              num_data=data.num_data, example_batch=x[:batch_size],
                              example_labels=None, device=device, max_chunk=max_chunk)
        self.driver = TrainingDriver(engine, data, plan, Selection(select="last"),
                                     progress=False)

    def run_epoch(self, epoch: int) -> float:
        """Train epoch ``epoch`` (epochs must come in order); the mean per-datapoint loss."""
        return float(np.mean(self.driver.run_until((epoch + 1) * self.steps_per_epoch)))
