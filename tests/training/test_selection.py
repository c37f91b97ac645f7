"""Validation selection and early stopping: the kept parameters are those of the argmin of the
validation history, patience stops after P evaluations without improvement, and a run
interrupted in mid-patience resumes exactly as the uninterrupted one (both backends)."""

from __future__ import annotations

import numpy as np
import pyro
import pytest

import ppl_vae.models
from ppl_vae import runs
from ppl_vae.io import load_arrays, read_json
from ppl_vae.training import fit
from ppl_vae.training.selection import Selection
from tests.training.test_resume import assert_same_run, spec, splits

BACKENDS = ["pyro", "numpyro"]


def train(backend, out=None, num_steps=150, **options):
    """lr 0.03 on 96 digits, evaluated every epoch (3 steps): the validation loss is noisy
    around its trend by 150 steps, so the best evaluation is neither the first nor the last."""
    pyro.clear_param_store()
    vae = ppl_vae.models.build(spec(), backend, seed=1)
    return fit(vae, splits(), num_steps=num_steps, batch_size=32, learning_rate=0.03, seed=7,
               eval_every=3, checkpoint_every=4, out_dir=out, progress=False, **options)


def valid_losses(history):
    valid = history[history["split"] == "valid"]
    return valid["step"].to_numpy(), valid["loss"].to_numpy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_kept_parameters_are_those_of_the_argmin_of_the_validation_history(backend,
                                                                                tmp_path):
    best = train(backend, tmp_path / "best")
    steps, losses = valid_losses(best.history)
    argmin = int(steps[np.argmin(losses)])
    assert argmin not in (0, 150)  # the data make this a real choice
    assert best.selected_step == argmin and best.num_steps == 150
    assert best.history.loc[best.history["selected"], "step"].tolist() == [argmin]
    # the same training stopped at the argmin holds the same parameters, bit for bit
    short = train(backend, num_steps=argmin, select="last")
    for name, value in short.vae.get_params().items():
        np.testing.assert_array_equal(best.vae.get_params()[name], value, err_msg=name)
        np.testing.assert_array_equal(load_arrays(best.run_dir / runs.PARAMS_FILE)[name], value)
    # the last state stays in the checkpoints (for resume), the record says which step is kept
    progress = runs.training_progress(best.run_dir)
    assert (progress.step, progress.params_step, progress.stopped_early) == (150, argmin, False)
    record = read_json(best.run_dir / runs.CONFIG_FILE)["selection"]
    assert record["step"] == argmin and record["last_step"] == 150
    assert record["best_valid_loss"] == float(np.min(losses)) and record["criterion"] == "ELBO"
    last = train(backend, select="last")
    assert last.selected_step == 150
    assert not np.array_equal(last.vae.get_params()["decoder.0.bias"],
                              best.vae.get_params()["decoder.0.bias"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_patience_stops_after_that_many_evaluations_without_improvement(backend, tmp_path):
    result = train(backend, tmp_path / "run", num_steps=300, patience=3)
    steps, losses = valid_losses(result.history)
    best = int(np.argmin(losses))
    # stopped at the third evaluation after the best, each of them no better than it
    assert len(steps) - 1 - best == 3 and np.all(losses[best + 1:] >= losses[best])
    assert result.num_steps == steps[-1] < 300
    # and not earlier: before the best, no run of 3 evaluations went without a new minimum
    running = np.minimum.accumulate(losses)
    improved = np.concatenate([[True], losses[1:] < running[:-1]])
    gaps = np.diff(np.flatnonzero(improved))
    assert gaps.max(initial=0) <= 3
    assert result.selection["stopped_early"] and result.selected_step == steps[best]
    run = runs.load_run(result.run_dir)
    assert run.unfinished_warning() is None and "stopped early" in run.parameters_note()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_interrupted_in_mid_patience_resumes_exactly(backend, tmp_path):
    whole = train(backend, tmp_path / "whole", num_steps=300, patience=4)
    steps, losses = valid_losses(whole.history)
    # an evaluation after which 1..3 evaluations had gone without improvement (patience 4)
    since_best = np.array([i - int(np.argmin(losses[: i + 1])) for i in range(len(losses))])
    middle = [int(steps[i]) for i in range(len(steps)) if 1 <= since_best[i] <= 3]
    assert middle
    stop = middle[0]
    part = train(backend, tmp_path / "parts", num_steps=stop, patience=4)
    assert not part.selection["stopped_early"]
    assert read_json(checkpoint_state(part.run_dir))["selection"]["bad_evaluations"] >= 1
    resumed = train(backend, tmp_path / "parts", num_steps=300, patience=4, resume=True)
    assert resumed.num_steps == whole.num_steps < 300
    assert resumed.selection == whole.selection
    assert_same_run(whole, resumed)
    assert resumed.history["selected"].tolist() == whole.history["selected"].tolist()


def checkpoint_state(run_dir):
    from ppl_vae.runs import checkpoints

    return checkpoints.latest_checkpoint(run_dir) / checkpoints.STATE_FILE


def test_selection_counts_bad_evaluations_and_refuses_bad_settings():
    kept = []
    selection = Selection(patience=2)
    for step, loss in [(0, 5.0), (3, 4.0), (6, 4.0), (9, 3.5), (12, 3.6), (15, float("nan"))]:
        selection.observe(step, loss, lambda step=step: kept.append(step) or {"w": step})
    assert (selection.best_step, selection.best_loss, selection.bad_evaluations) == (9, 3.5, 2)
    assert selection.stopped and kept == [0, 3, 9] and selection.kept_params({}) == {"w": 9}
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        Selection(patience=0)
    with pytest.raises(ValueError, match="select must be one of best-valid, last"):
        Selection(select="best")


def test_fit_refuses_selection_without_validation_data():
    vae = ppl_vae.models.build(spec(), "pyro", seed=1)
    x = (splits().train > 0.5).astype(np.float32)
    with pytest.raises(ValueError, match="select='best-valid' needs validation data"):
        fit(vae, x, num_steps=3, batch_size=32, select="best-valid", progress=False)
    with pytest.raises(ValueError, match="patience .* needs validation data"):
        fit(vae, x, num_steps=3, batch_size=32, patience=2, progress=False)
    assert fit(vae, x, num_steps=3, batch_size=32, progress=False).selection["select"] == "last"
