"""Checkpoints and resume: a resumed run equals the uninterrupted one bit for bit (both
backends, estimators with extra state, dynamic binarization, a resume in mid-epoch), after an
exception and after a process killed while writing a checkpoint."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pytest

import ppl_vae.models
from ppl_vae import data as data_module
from ppl_vae.runs import checkpoints as checkpoint
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import fit, loop

TESTS = Path(__file__).parent


def spec(conditioned=False):
    """The standard VAE, or cvae_mnist (class-conditional learned prior), shrunk to digits."""
    return ppl_vae.models.load_spec("cvae_mnist" if conditioned else "gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(16,)))


def splits():
    """96 digits with dynamic binarization (a fresh draw each epoch), 40 held out."""
    grey = data_module.prepare("digits", likelihood="bernoulli", binarization="dynamic")
    return dataclasses.replace(grey, train=grey.train[:96], valid=grey.valid[:40],
                               train_labels=grey.train_labels[:96],
                               valid_labels=grey.valid_labels[:40])


def train(backend, out, num_steps, *, estimator="reparam", num_particles=1, resume=False,
          conditioned=False):
    """Batch 32: 3 steps an epoch; checkpoints every 4 steps and at the end. Each call starts
    from an empty Pyro param store, as a resume in a new process does."""
    pyro.clear_param_store()
    vae = ppl_vae.models.build(spec(conditioned), backend, seed=1)
    return fit(vae, splits(), num_steps=num_steps, batch_size=32, estimator=estimator,
               num_particles=num_particles, seed=7, eval_every=3, checkpoint_every=4,
               out_dir=out, resume=resume, progress=False)


def assert_same_run(a, b):
    """Same parameters, optimizer/RNG state and training losses, bit for bit."""
    for name, value in a.vae.get_params().items():
        np.testing.assert_array_equal(b.vae.get_params()[name], value, err_msg=name)
    final_a = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(a.run_dir))
    final_b = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(b.run_dir))
    assert final_a.step == final_b.step and set(final_a.arrays) == set(final_b.arrays)
    for name, value in final_a.arrays.items():
        np.testing.assert_array_equal(final_b.arrays[name], value, err_msg=name)
    columns = ["step", "epoch", "split", "loss"]
    train_a = a.history.query("split == 'train'")[columns].reset_index(drop=True)
    train_b = b.history.query("split == 'train'")[columns].reset_index(drop=True)
    assert train_a.equals(train_b)
    valid_a = a.history.query("split == 'valid'").set_index("step")["loss"]
    valid_b = b.history.query("split == 'valid'").set_index("step")["loss"]
    common = valid_a.index.intersection(valid_b.index)
    assert len(common) >= 4
    np.testing.assert_array_equal(valid_a[common], valid_b[common])


CASES = [("pyro", "reparam", 1), ("pyro", "score-baseline", 1), ("pyro", "score-nn-baseline", 1),
         ("pyro", "iwae", 3), ("numpyro", "reparam", 1), ("numpyro", "score-baseline", 1)]


@pytest.mark.parametrize("backend, estimator, particles", CASES)
def test_resume_reproduces_the_uninterrupted_run_exactly(backend, estimator, particles,
                                                          tmp_path):
    kw = {"estimator": estimator, "num_particles": particles}
    whole = train(backend, tmp_path / "whole", 15, **kw)
    train(backend, tmp_path / "parts", 10, **kw)  # stops in mid-epoch (step 10 of 3-step epochs)
    resumed = train(backend, tmp_path / "parts", 15, resume=True, **kw)
    assert_same_run(whole, resumed)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_resume_of_a_conditioned_run_is_exact(backend, tmp_path):
    """A cVAE's labels travel with the minibatch order: the resumed run equals the whole one."""
    kw = {"conditioned": True}
    whole = train(backend, tmp_path / "whole", 15, **kw)
    train(backend, tmp_path / "parts", 10, **kw)
    resumed = train(backend, tmp_path / "parts", 15, resume=True, **kw)
    assert_same_run(whole, resumed)
    assert whole.vae.get_params()["prior.loc"].shape == (10, 2)
    assert resumed.num_steps == 15 and resumed.history["wall_time"].is_monotonic_increasing


def test_resume_after_an_exception_past_a_checkpoint(tmp_path, monkeypatch):
    whole = train("pyro", tmp_path / "whole", 15)
    original = loop.save

    def save_then_fail(engine, run_dir, step, *args):
        path = original(engine, run_dir, step, *args)
        if step == 8:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C right after it
        return path

    monkeypatch.setattr(loop, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        train("pyro", tmp_path / "parts", 15)
    monkeypatch.setattr(loop, "save", original)
    assert checkpoint.latest_checkpoint(tmp_path / "parts").name == "step-00000008"
    assert_same_run(whole, train("pyro", tmp_path / "parts", 15, resume=True))


KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_resume import train
from ppl_vae.runs import checkpoints as checkpoint

original = checkpoint.save_arrays

def save_arrays(path, arrays, metadata=None):
    original(path, arrays, metadata)
    # killed while writing the checkpoint of step 8, after its first file
    if path.parent.name.startswith(".tmp-step-00000008"):
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.save_arrays = save_arrays
train({backend!r}, {out!r}, 15)
"""


# What a kill can damage is the checkpoint folder, written the same way for both backends; the
# NumPyro variant (another process start and compile) runs with the slow tests.
@pytest.mark.parametrize("backend", ["pyro", pytest.param("numpyro", marks=pytest.mark.slow)])
def test_process_killed_while_writing_a_checkpoint_resumes_exactly(backend, tmp_path):
    whole = train(backend, tmp_path / "whole", 15)
    out = tmp_path / "killed"
    script = textwrap.dedent(KILLER.format(tests=str(TESTS), backend=backend, out=str(out)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(TESTS)}, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    root = out / "checkpoints"
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]  # the torn write
    assert checkpoint.latest_checkpoint(out).name == "step-00000004"
    checkpoint.load_checkpoint(root / "step-00000004")  # intact
    resumed = train(backend, out, 15, resume=True)
    assert_same_run(whole, resumed)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    for path in root.iterdir():
        if path.name.startswith("step-"):
            checkpoint.load_checkpoint(path)
