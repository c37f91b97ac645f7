"""Evaluation internals, one concern per module; the public API is :mod:`ppl_vae.evaluate`."""
