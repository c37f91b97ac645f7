"""The parts of :func:`ppl_vae.train.fit`, one concern per module.

``batches``      training data: checks at fit time, each epoch's order, dynamic binarization
``checkpoint``   checkpoint folders: atomic writes, checksums, optimizer/RNG state without pickle
``loop``         the backend-independent driver: steps, evaluation, checkpoints, history, progress
``pyro_loop``    the Pyro engine: ``loss_and_grads`` + ``PyroOptim`` on a torch device
``numpyro_loop`` the NumPyro engine: ``SVI.update`` under ``jax.lax.scan``, jitted per chunk
"""
