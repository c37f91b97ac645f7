"""The training protocol end to end: schedules, KL warm-up, β and free bits through ``fit``
(per-step weights, exact resume, records, refusals), the ``train`` flags and ``compare``'s
pass-through to every cell."""

from __future__ import annotations

import numpy as np
import pyro
import pytest

import ppl_vae.models
from ppl_vae import runs
from ppl_vae.cli import main
from ppl_vae.compare import plan
from ppl_vae.io import read_json
from ppl_vae.training import fit, loop
from ppl_vae.training.schedules import KLWeight, LRSchedule
from tests.training.test_resume import assert_same_run, spec, splits

BACKENDS = ["pyro", "numpyro"]
PROTOCOL = {"lr_schedule": LRSchedule(2e-3, kind="cosine", warmup_steps=4, decay_steps=12,
                                      min_learning_rate=1e-4),
            "beta": 0.5, "kl_warmup_steps": 9, "kl_warmup_start": 0.1, "free_bits": 0.05,
            "patience": 6}


def train(backend, out, num_steps, *, resume=False, **options):
    pyro.clear_param_store()
    vae = ppl_vae.models.build(spec(), backend, seed=1)
    return fit(vae, splits(), num_steps=num_steps, batch_size=32, seed=7, eval_every=3,
               checkpoint_every=4, out_dir=out, resume=resume, progress=False, **options)


def test_the_kl_weight_of_each_step_is_the_warm_up_closed_form():
    weights = KLWeight(beta=0.5, warmup_steps=4, warmup_start=0.1).weights(2, 7)
    # w_t = 0.1 + 0.4 min(1, t / 4) for t = 2..6, computed by hand; float64 rounding of the
    # affine form is a few ulp
    np.testing.assert_allclose(weights, [0.3, 0.4, 0.5, 0.5, 0.5], rtol=1e-15)
    assert KLWeight(beta=2.0).weights(0, 3).tolist() == [2.0, 2.0, 2.0]
    assert not KLWeight().active
    with pytest.raises(ValueError, match=r"kl_warmup_start must be a number in \[0, beta"):
        KLWeight(beta=0.5, warmup_steps=3, warmup_start=0.7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_hands_every_step_its_kl_weight(backend, monkeypatch):
    """The engine gets w_t for the global step t of each chunk, across chunk boundaries."""
    seen = []
    original = loop.Plan.kl_weights

    def record(self, step, end):
        weights = original(self, step, end)
        seen.append((step, end, weights.tolist()))
        return weights

    monkeypatch.setattr(loop.Plan, "kl_weights", record)
    result = train(backend, None, 7, beta=0.5, kl_warmup_steps=4)
    monkeypatch.undo()
    steps = [s for start, end, _ in seen for s in range(start, end)]
    weights = [w for *_, chunk in seen for w in chunk]
    assert steps == list(range(7))
    np.testing.assert_array_equal(weights, 0.5 * np.minimum(1.0, np.arange(7) / 4))
    # validation rows score the unweighted ELBO: at step 0 (same weights, same evaluation
    # draws) a β = 0.5 run and a plain run record the same value, bit for bit
    plain = train(backend, None, 1)
    first = [r.history.query("split == 'valid' and step == 0")["loss"].item()
             for r in (result, plain)]
    assert first[0] == first[1]
    # while the training rows are the weighted loss that was optimized (w_0 = 0: no KL)
    assert result.history.query("split == 'train'")["loss"].iloc[0] < \
        plain.history.query("split == 'train'")["loss"].iloc[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_with_the_whole_protocol_resumes_exactly(backend, tmp_path):
    """Cosine with warm-up, KL warm-up to β, free bits and patience: stopped at step 10
    (mid-epoch, mid-warm-up of both schedules) and resumed, the run equals the whole one."""
    whole = train(backend, tmp_path / "whole", 21, **PROTOCOL)
    train(backend, tmp_path / "parts", 10, **PROTOCOL)
    resumed = train(backend, tmp_path / "parts", 21, resume=True, **PROTOCOL)
    assert_same_run(whole, resumed)
    record = read_json(whole.run_dir / runs.CONFIG_FILE)["training"]
    assert record["lr_schedule"]["kind"] == "cosine" and record["free_bits"] == 0.05
    assert record["kl_weight"] == {"beta": 0.5, "warmup_steps": 9, "warmup_start": 0.1}
    with pytest.raises(runs.CheckpointError, match="kl_weight was"):
        train(backend, tmp_path / "parts", 21, resume=True, **{**PROTOCOL, "beta": 0.6})


def test_objective_options_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="no separate KL term"):
        train("pyro", None, 3, estimator="iwae", num_particles=2, beta=0.5)
    with pytest.raises(ValueError, match="decay_rate=0.5 does not apply to kind 'constant'"):
        vae = ppl_vae.models.build(spec().with_training(lr_decay_rate=0.5), "pyro", seed=1)
        fit(vae, splits(), num_steps=3, batch_size=32, progress=False)


def test_train_flags_replace_the_spec_training_fields(tmp_path):
    out = tmp_path / "run"
    spec_file = tmp_path / "tiny.toml"
    import tomli_w

    spec_file.write_text(tomli_w.dumps(spec().replace(name="tiny").to_dict()))
    code = main(["train", str(spec_file), "--dataset", "digits", "--steps", "12",
                 "--batch-size", "32", "--quiet", "--out", str(out), "--patience", "2",
                 "--lr-schedule", "step", "--lr-decay-steps", "4", "--lr-decay-rate", "0.5",
                 "--beta", "0.7", "--kl-warmup-steps", "5", "--free-bits", "0.01",
                 "--select", "last"])
    assert code == 0
    training = runs.load_run(out).spec.training
    assert (training.patience, training.lr_schedule, training.lr_decay_steps, training.beta,
            training.kl_warmup_steps, training.free_bits, training.select) == (
        2, "step", 4, 0.7, 5, 0.01, "last")
    record = read_json(out / runs.CONFIG_FILE)
    assert record["training"]["lr_schedule"] == {"kind": "step", "learning_rate": 1e-3,
                                                 "warmup_steps": 0, "decay_steps": 4,
                                                 "decay_rate": 0.5}
    assert record["selection"]["select"] == "last"
    # a resume without the flags the run was started with is refused, naming them
    assert main(["train", str(spec_file), "--dataset", "digits", "--steps", "12",
                 "--batch-size", "32", "--quiet", "--out", str(out), "--resume"]) == 2


def test_compare_passes_the_protocol_to_every_cell():
    cells = plan(["gaussian_gaussian", "gaussian_vampprior"], range(2),
                 training={"patience": 4, "lr_schedule": "cosine", "beta": 0.8}, num_steps=10)
    trained = [cell.spec().training for cell in cells]
    assert len(trained) == 4
    assert {(t.patience, t.lr_schedule, t.beta) for t in trained} == {(4, "cosine", 0.8)}
    plain = plan(["gaussian_gaussian"], range(1), num_steps=10)[0]
    assert plain.key() != cells[0].key()  # the protocol is part of what keys a cell
