"""Training by stochastic variational inference: :func:`fit`, on either backend.

``svi``              fit(): the entry point: checks, run directory, resume, one engine per backend
``loop``             the backend-independent driver: steps, evaluation, checkpoints, history
``batches``          training data: checks at fit time, each epoch's order, dynamic binarization
``checkpoint``       checkpoint folders: atomic writes, checksums, optimizer/RNG state, no pickle
``pyro_engine``      the Pyro engine: ``loss_and_grads`` + ``PyroOptim`` on a torch device
``numpyro_engine``   the NumPyro engine: ``SVI.update`` under ``jax.lax.scan``, jitted per chunk
"""

from ppl_vae.training.loop import DivergenceError, NonFiniteLossError, TrainingStoppedError
from ppl_vae.training.svi import CLIP_NORM, OPTIMIZERS, FitResult, fit

__all__ = ["CLIP_NORM", "OPTIMIZERS", "DivergenceError", "FitResult", "NonFiniteLossError",
           "TrainingStoppedError", "fit"]
