"""Shared test setup: CPU-only JAX, a compilation cache, a clean Pyro param store, fixed seeds.

JAX reads ``JAX_PLATFORMS`` and its cache settings when it is first imported, so they are set
here, before any test module imports it. The persistent compilation cache lets the many small
fits in the test suite reuse the compiled SVI step of an identical model instead of compiling
it again (seconds each on a shared 2-core machine).
"""

import os
import sys
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"ppl_vae_jax_cache_{os.getuid()}"))
# Every compiled program is cached, the eager ops' tiny ones too: measured on
# tests/test_networks.py (eager float64 ops of many shapes), a warm run took 7.6 s with a
# threshold of 0 and 25 s with 0.2 s (a few hundred entries, 2 MB).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The sample-quality classifiers of the tests' small datasets go to a per-user temp folder,
# not the user's cache (ppl_vae.evaluation.sample_quality.CACHE_ENV); pool workers inherit it.
os.environ.setdefault("PPL_VAE_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"ppl_vae_test_cache_{os.getuid()}"))


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    """Every test starts with an empty Pyro param store and seeded global RNGs (torch, NumPy,
    random) — only when the test session uses Pyro at all, so JAX-only tests stay light."""
    if "pyro" in sys.modules:
        import pyro

        pyro.clear_param_store()
        pyro.set_rng_seed(0)
    yield


def folder_bytes(path):
    """Every file under ``path`` (hidden ones too) as {relative path: bytes}: equal before and
    after means nothing in the folder changed, byte for byte."""
    from pathlib import Path

    root = Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
