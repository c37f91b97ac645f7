"""Learning-rate schedules on both engines: every kind's per-step rate against its closed form
(written here, not taken from the package), the rate Adam actually applied, the plateau rule's
decisions on a fixed sequence of validation losses, exact resume in mid-schedule, bad fields,
today's optimizer for a constant rate, and the per-step KL weights' plumbing.

Tolerances. torch's schedulers do float64 arithmetic on Python floats; their recursive forms
(LinearLR's and ExponentialLR's products, CosineAnnealingLR's ratio of cosines) drift from the
closed form by an ulp or so (measured at most 2e-16 relative over these 12 steps): rtol 1e-12.
optax evaluates its schedules in float32 under JAX without x64 (and the plateau rate is cast
to float32): one rounding is 6e-8 relative, ``pow`` and a product stay below 1e-6 (measured
1.2e-7), so rtol 1e-6; float32 ``1 + cos`` near pi keeps only its absolute error, so a cosine
also gets atol 1e-7 * lr (measured 6.5e-8 * lr, 1.4e-6 relative at the last step of a cosine
to 0). The rate Adam applied is recovered from the float32 parameters and Adam's moments (the
update is ``-lr * mhat / (sqrt(vhat) + eps)``): rounding ``theta + delta`` to float32 costs up
to 3e-8 / |delta| relative, |delta| >= 1e-3 here, and optax's bias correction
``1 - 0.999 ** t`` is computed in float32 (1.3e-5 relative at t = 1); the median over all
elements is taken, so rtol 1e-4 (measured at most 4.7e-6 on torch, 1.6e-5 on optax).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyro
import pytest
import torch

import ppl_vae.models
from ppl_vae.estimators import Reparam, get_estimator
from ppl_vae.runs import CheckpointError, checkpoints
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import loop
from ppl_vae.training.numpyro_engine import NumPyroEngine
from ppl_vae.training.pyro_engine import JointLRScheduler, JointOptim, PyroEngine
from ppl_vae.training.schedules import LRSchedule

SPEC = ppl_vae.models.load_spec("gaussian_gaussian").replace(
    data_shape=(6,), latent_dim=2, encoder=NetworkSpec(hidden=(5,)),
    decoder=NetworkSpec(hidden=(5,)))
"""A 6-5-2 VAE: the schedules, not the model, are under test."""
NUM_DATA, BATCH, STEPS, MAX_CHUNK = 24, 8, 12, 4
_rng = np.random.default_rng(0)
X = (_rng.random((NUM_DATA, 6)) > 0.5).astype(np.float32)
IDX = np.stack([_rng.permutation(NUM_DATA)[:BATCH] for _ in range(16)])
LR, W, D, RATE, LR_MIN = 0.01, 3, 5, 0.5, 1e-3
TORCH_RTOL, OPTAX_RTOL, APPLIED_RTOL = 1e-12, 1e-6, 1e-4
OPTAX_ATOL = 1e-7 * LR  # float32 1 + cos(x) near pi: see the module docstring


def engine(backend, schedule, optimizer="adam", seed=3):
    """A fresh engine over a fresh model (seed 1) and an empty Pyro param store."""
    pyro.clear_param_store()
    vae = ppl_vae.models.build(SPEC, backend, seed=1)
    common = dict(estimator=get_estimator("reparam"), eval_estimator=Reparam(),
                  num_particles=1, seed=seed, num_data=NUM_DATA, schedule=schedule)
    if backend == "pyro":
        out = PyroEngine(vae, optimizer=PyroEngine.build_optimizer(optimizer, schedule),
                         **common)
    else:
        out = NumPyroEngine(vae, optimizer=NumPyroEngine.build_optimizer(optimizer, schedule),
                            example_batch=X[:BATCH], max_chunk=MAX_CHUNK, **common)
    out.set_epoch_data(X)
    return out


# --------------------------------------------------------------------------- Adam's rate

def adam_view(eng):
    """(unconstrained parameters, first moments, second moments, Adam's step count)."""
    if eng.backend == "pyro":
        store = pyro.get_param_store()
        params = eng.get_params()  # the model's parameters are unconstrained
        optim = eng.optim.optimizer
        if optim is None:
            return params, None, None, 0
        state = {store.param_name(p): optim.state[p] for p in optim.param_groups[0]["params"]}
        first = next(iter(state.values()))
        return (params, {n: s["exp_avg"].numpy() for n, s in state.items()},
                {n: s["exp_avg_sq"].numpy() for n, s in state.items()}, int(first["step"]))
    optim_state = eng.svi_state.optim_state
    params = {n: np.asarray(v, np.float64) for n, v in
              eng.svi.optim.get_params(optim_state).items()}
    adam = optax.tree.get(optim_state, "ScaleByAdamState")
    return (params, {n: np.asarray(v, np.float64) for n, v in adam.mu.items()},
            {n: np.asarray(v, np.float64) for n, v in adam.nu.items()}, int(adam.count))


def applied_lr(before, after):
    """The learning rate of the Adam step between two :func:`adam_view`s: the median over
    parameter elements of -delta / (mhat / (sqrt(vhat) + eps)), torch's and optax's update
    alike (betas 0.9, 0.999, eps 1e-8)."""
    params, m, v, t = after
    ratios = []
    for name, value in params.items():
        delta = (np.asarray(value, np.float64) - before[0][name]).ravel()
        mhat = np.asarray(m[name], np.float64).ravel() / (1 - 0.9 ** t)
        vhat = np.asarray(v[name], np.float64).ravel() / (1 - 0.999 ** t)
        direction = mhat / (np.sqrt(vhat) + 1e-8)
        keep = np.abs(direction) > 0.1
        ratios.append(-delta[keep] / direction[keep])
    return float(np.median(np.concatenate(ratios)))


def step_by_step(eng, steps, check_applied=True, before_step=None):
    """Run ``steps`` one-step chunks; returns the learning rate announced before each step
    and the one Adam applied."""
    announced, applied = [], []
    for t in range(steps):
        if before_step is not None:
            before_step(t)
        announced.append(eng.learning_rate())
        view = adam_view(eng) if check_applied else None
        result = eng.run(IDX[t:t + 1])
        assert result.failure is None
        if check_applied:
            applied.append(applied_lr(view, adam_view(eng)))
    return np.array(announced), np.array(applied)


# --------------------------------------------------------------------------- closed forms

def warm(t, w):
    return LR * (t + 1) / w


CASES = {
    # name: (schedule, closed form of the rate of step t, optimizer)
    "constant": (LRSchedule(LR), lambda t: LR, "adam"),
    "warmup": (LRSchedule(LR, "warmup", warmup_steps=W),
               lambda t: warm(t, W) if t < W else LR, "adam"),
    "warmup-1": (LRSchedule(LR, "warmup", warmup_steps=1), lambda t: LR, "adam"),
    "cosine": (LRSchedule(LR, "cosine", warmup_steps=W, decay_steps=D,
                          min_learning_rate=LR_MIN),
               lambda t: warm(t, W) if t < W else
               LR_MIN + (LR - LR_MIN) * (1 + math.cos(math.pi * min(t - W, D) / D)) / 2,
               "adam"),
    "cosine-over-run": (LRSchedule(LR, "cosine", total_steps=STEPS),
                        lambda t: LR * (1 + math.cos(math.pi * t / STEPS)) / 2, "adam"),
    "exponential": (LRSchedule(LR, "exponential", warmup_steps=W, decay_steps=D,
                               decay_rate=RATE),
                    lambda t: warm(t, W) if t < W else LR * RATE ** ((t - W) / D), "adam"),
    "step": (LRSchedule(LR, "step", warmup_steps=W, decay_steps=D, decay_rate=RATE),
             lambda t: warm(t, W) if t < W else LR * RATE ** ((t - W) // D), "adam"),
    "step-clipped": (LRSchedule(LR, "step", decay_steps=D, decay_rate=RATE),
                     lambda t: LR * RATE ** (t // D), "clipped-adam"),
}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("case", list(CASES))
def test_rate_of_every_step_is_the_closed_form(backend, case):
    schedule, closed_form, optimizer = CASES[case]
    eng = engine(backend, schedule, optimizer)
    # ClippedAdam's update is not the one applied_lr inverts
    announced, applied = step_by_step(eng, STEPS, check_applied=optimizer == "adam")
    expected = np.array([closed_form(t) for t in range(STEPS)])
    rtol, atol = (TORCH_RTOL, 0) if backend == "pyro" else (OPTAX_RTOL, OPTAX_ATOL)
    np.testing.assert_allclose(announced, expected, rtol=rtol, atol=atol)
    if optimizer == "adam":
        np.testing.assert_allclose(applied, expected, rtol=APPLIED_RTOL, atol=0)
    np.testing.assert_allclose(eng.learning_rate(), closed_form(STEPS), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- plateau

PLATEAU = LRSchedule(LR, "plateau", plateau_factor=0.5, plateau_patience=1,
                     plateau_threshold=0.01, min_learning_rate=0.002)
# Improvement is v < best * 0.99; a reduction after 2 (patience + 1) evaluations without one.
PLATEAU_LOSSES = [10.0, 9.95, 9.0, 9.0, 9.0, 8.0, 8.5, 8.5, 8.5, 8.5, 8.5, 8.5, 7.0]
PLATEAU_RATES = [
    0.01,    # 10: the first value is the best so far
    0.01,    # 9.95: not below 10 * 0.99 = 9.9 (the relative threshold), 1 bad
    0.01,    # 9: best, 0 bad
    0.01,    # 1 bad
    0.005,   # 2 bad > patience: halved, count restarts (best stays 9)
    0.005,   # 8: best
    0.005,   # 1 bad
    0.0025,  # 2 bad: halved
    0.0025,  # 1 bad
    0.002,   # 2 bad: 0.00125 floored at min_learning_rate
    0.002,   # 1 bad
    0.002,   # 2 bad: already at the floor, nothing changes
    0.002,   # 7: best
]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_plateau_makes_the_hand_derived_decisions(backend):
    """One validation loss before each step (the first before any step, as the driver's
    evaluation at step 0); the rate each announces and the one Adam then applies."""
    eng = engine(backend, PLATEAU)
    steps = len(PLATEAU_LOSSES)
    announced, applied = step_by_step(
        eng, steps, before_step=lambda t: eng.after_validation(PLATEAU_LOSSES[t]))
    rtol = TORCH_RTOL if backend == "pyro" else OPTAX_RTOL
    np.testing.assert_allclose(announced, PLATEAU_RATES, rtol=rtol, atol=0)
    np.testing.assert_allclose(applied, PLATEAU_RATES, rtol=APPLIED_RTOL, atol=0)
    if backend == "numpyro":  # the new rates reached the compiled chunk as data
        assert eng._chunk._cache_size() == 1


@pytest.mark.parametrize("patience", [0, 3])
def test_plateau_decisions_agree_on_a_long_random_sequence(patience):
    """torch's ReduceLROnPlateau and optax's reduce_on_plateau (patience + 1) make the same
    decisions on 80 losses with ties, small and large improvements. Losses on a 0.01 grid
    with a 1% threshold keep every comparison >= 1e-4 from its boundary, far beyond float32
    rounding (1e-6 at 10), so the float32 optax comparisons decide as torch's float64 ones."""
    rng = np.random.default_rng(5)
    moves = rng.choice([0.0, 0.0, 0.05, 0.3, -0.1], size=80)
    losses = np.round(10.0 - np.cumsum(moves), 2)
    schedule = LRSchedule(LR, "plateau", plateau_factor=0.5, plateau_patience=patience,
                          plateau_threshold=0.01, min_learning_rate=1e-4)
    rates = {}
    for backend in ("pyro", "numpyro"):
        eng = engine(backend, schedule)
        rates[backend] = []
        for loss in losses:
            eng.after_validation(float(loss))
            rates[backend].append(eng.learning_rate())
    np.testing.assert_allclose(rates["numpyro"], rates["pyro"], rtol=OPTAX_RTOL, atol=0)
    # the sequence exercises the rule: six halvings, then the floor
    assert np.sum(np.diff(rates["pyro"]) < 0) == 7 and rates["pyro"][-1] == 1e-4


def test_other_kinds_ignore_validation_losses():
    for backend in ("pyro", "numpyro"):
        eng = engine(backend, CASES["cosine"][0])
        for loss in (5.0, 5.0, 5.0, 5.0):
            eng.after_validation(loss)
        assert eng.learning_rate() == pytest.approx(LR / W, rel=OPTAX_RTOL)


# --------------------------------------------------------------------------- resume

RESUME_LOSSES = [10.0, 9.0, 9.5, 9.5, 8.0, 8.5]
"""Fed before each 2-step chunk; the split after 3 chunks falls with 1 evaluation without
improvement counted, which the 4th must find to reduce."""


def chunks(eng, first, last, schedule):
    rates = []
    for k in range(first, last):
        if schedule.on_validation:
            eng.after_validation(RESUME_LOSSES[k])
        rates.append(eng.learning_rate())
        assert eng.run(IDX[2 * k:2 * k + 2]).failure is None
    return rates


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("kind", ["cosine", "plateau"])
def test_resume_in_mid_schedule_continues_it_exactly(backend, kind, tmp_path):
    schedule = CASES["cosine"][0] if kind == "cosine" else PLATEAU
    whole = engine(backend, schedule)
    rates_whole = chunks(whole, 0, 6, schedule) + [whole.learning_rate()]
    params_whole = whole.get_params()

    parts = engine(backend, schedule)
    rates_parts = chunks(parts, 0, 3, schedule)
    arrays, meta = parts.state()
    # through a real checkpoint: safetensors and JSON (the plateau's best starts at inf)
    path = checkpoints.write_checkpoint(tmp_path, 6, params=parts.get_params(), arrays=arrays,
                                        state={"engine": meta}, history_csv="")
    saved = checkpoints.load_checkpoint(path)
    resumed = engine(backend, schedule)
    resumed.load_state(saved.params, saved.arrays, saved.state["engine"])
    rates_parts += chunks(resumed, 3, 6, schedule) + [resumed.learning_rate()]

    assert rates_parts == rates_whole  # the same float operations: exactly
    for name, value in params_whole.items():
        np.testing.assert_array_equal(resumed.get_params()[name], value, err_msg=name)
    rtol = TORCH_RTOL if backend == "pyro" else OPTAX_RTOL
    if kind == "cosine":
        expected = [CASES["cosine"][1](t) for t in range(0, 13, 2)]
    else:
        expected = [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005]
    np.testing.assert_allclose(rates_whole, expected, rtol=rtol, atol=0)


# --------------------------------------------------------------------------- fields

BAD = [
    ({"learning_rate": 0.0}, "learning_rate", "0.0"),
    ({"learning_rate": math.nan}, "learning_rate", "nan"),
    ({"kind": "linear"}, "kind", "'linear'"),
    ({"kind": "warmup"}, "warmup_steps", "0"),
    ({"kind": "warmup", "warmup_steps": 2.5}, "warmup_steps", "2.5"),
    ({"kind": "warmup", "warmup_steps": True}, "warmup_steps", "True"),
    ({"kind": "cosine", "decay_steps": 5, "warmup_steps": -1}, "warmup_steps", "-1"),
    ({"kind": "constant", "warmup_steps": 3}, "warmup_steps", "3"),
    ({"kind": "plateau", "warmup_steps": 2}, "warmup_steps", "2"),
    ({"kind": "exponential"}, "decay_steps", "None"),
    ({"kind": "step", "decay_steps": 0}, "decay_steps", "0"),
    ({"kind": "exponential", "decay_steps": 5, "decay_rate": 1.0}, "decay_rate", "1.0"),
    ({"kind": "step", "decay_steps": 5, "decay_rate": 0.0}, "decay_rate", "0.0"),
    ({"kind": "cosine", "decay_steps": 5, "decay_rate": 0.5}, "decay_rate", "0.5"),
    ({"kind": "cosine", "decay_steps": 5, "min_learning_rate": 1e-3}, "min_learning_rate",
     "0.001"),
    ({"kind": "exponential", "decay_steps": 5, "min_learning_rate": 1e-4},
     "min_learning_rate", "0.0001"),
    ({"kind": "cosine"}, "decay_steps", "None"),
    ({"kind": "cosine", "warmup_steps": 5, "total_steps": 5}, "total_steps", "5"),
    ({"total_steps": 0}, "total_steps", "0"),
    ({"kind": "plateau", "plateau_factor": 1.0}, "plateau_factor", "1.0"),
    ({"kind": "plateau", "plateau_patience": -1}, "plateau_patience", "-1"),
    ({"kind": "plateau", "plateau_threshold": 0.0}, "plateau_threshold", "0.0"),
    ({"kind": "plateau", "decay_steps": 4}, "decay_steps", "4"),
]


@pytest.mark.parametrize("fields, name, value", BAD, ids=[f"{b[1]}-{i}" for i, b in
                                                          enumerate(BAD)])
def test_bad_fields_are_refused_by_name(fields, name, value):
    with pytest.raises(ValueError, match=name) as err:
        LRSchedule(**{"learning_rate": 1e-3, **fields})
    assert value in str(err.value)


def test_to_dict_holds_what_the_kind_uses_and_round_trips():
    for schedule, _, _ in CASES.values():
        data = json.loads(json.dumps(schedule.to_dict()))
        assert LRSchedule.from_dict(data) == schedule
    assert LRSchedule(LR).to_dict() == {"kind": "constant", "learning_rate": LR}
    assert CASES["cosine-over-run"][0].to_dict() == {
        "kind": "cosine", "learning_rate": LR, "warmup_steps": 0, "min_learning_rate": 0.0,
        "total_steps": STEPS}
    assert CASES["cosine-over-run"][0].horizon == STEPS


# --------------------------------------------------------------------------- optimizers

def test_a_constant_rate_builds_todays_optimizers():
    """What checkpoints and bit-identical resumes rely on: the same torch optimizer and the
    same optax transformation (tree structure and updates) as before schedules existed."""
    constant = LRSchedule(LR)
    adam = PyroEngine.build_optimizer("adam", constant)
    assert type(adam) is JointOptim and adam.pt_optim_constructor is torch.optim.Adam
    assert adam.pt_optim_args == {"lr": LR, "fused": True}
    clipped = PyroEngine.build_optimizer("clipped-adam", constant)
    assert type(clipped) is JointOptim
    assert clipped.pt_optim_constructor is pyro.optim.clipped_adam.ClippedAdam
    assert clipped.pt_optim_args == {"lr": LR, "clip_norm": loop.CLIP_NORM}
    assert isinstance(PyroEngine.build_optimizer("adam", CASES["step"][0]), JointLRScheduler)

    params = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
    grads = jax.tree.map(lambda p: 20 * jnp.sin(p + 1.0), params)
    todays = {"adam": optax.adam(LR),
              "clipped-adam": optax.chain(optax.clip(loop.CLIP_NORM), optax.adam(LR))}
    for name, reference in todays.items():
        built = NumPyroEngine.build_optimizer(name, constant)
        state_b, state_r = built.init(params), reference.init(params)
        assert jax.tree.structure(state_b) == jax.tree.structure(state_r)
        for _ in range(3):
            update_b, state_b = built.update(grads, state_b, params)
            update_r, state_r = reference.update(grads, state_r, params)
            for leaf_b, leaf_r in zip(jax.tree.leaves(update_b), jax.tree.leaves(update_r),
                                      strict=True):
                np.testing.assert_array_equal(leaf_b, leaf_r)
    for build in (PyroEngine.build_optimizer, NumPyroEngine.build_optimizer):
        with pytest.raises(ValueError, match="sgd"):
            build("sgd", constant)


def test_parameters_seen_later_follow_the_torch_schedule():
    """A parameter first seen after some steps (a neural baseline's) joins the first group,
    so the scheduler moves its rate too; Adam's first step on it is -lr * sign(grad)."""
    optim = PyroEngine.build_optimizer("adam", LRSchedule(0.1, "step", decay_steps=1,
                                                          decay_rate=0.5))
    a = pyro.param("a", torch.ones(3)).unconstrained()
    a.grad = torch.ones(3)
    optim([a])
    optim.step()
    b = pyro.param("b", torch.ones(2)).unconstrained()
    a.grad, b.grad = torch.ones(3), -torch.ones(2)
    optim([a, b])
    # fused float32 Adam: 1 + 0.05 * g / (|g| + 1e-8) rounded to float32
    np.testing.assert_allclose(b.detach().numpy(), 1.05, rtol=1e-6)
    assert len(optim.optimizer.param_groups) == 1
    assert set(optim.get_state()["optimizer"]) == {"a", "b"}


def test_a_checkpoint_of_another_optimizer_is_refused():
    scheduled = engine("pyro", CASES["step"][0])
    scheduled.run(IDX[:1])
    arrays, meta = scheduled.state()
    constant = engine("pyro", LRSchedule(LR))
    with pytest.raises(CheckpointError, match="JointLRScheduler"):
        constant.load_state(scheduled.get_params(), arrays, meta)


def test_a_schedule_needs_the_optimizer_built_for_it():
    pyro.clear_param_store()
    vae = ppl_vae.models.build(SPEC, "pyro", seed=1)
    with pytest.raises(TypeError, match="build_optimizer"):
        PyroEngine(vae, estimator=get_estimator("reparam"), eval_estimator=Reparam(),
                   num_particles=1, seed=0, num_data=NUM_DATA, schedule=PLATEAU,
                   optimizer=PyroEngine.build_optimizer("adam", LRSchedule(LR)))


# --------------------------------------------------------------------------- KL weights

class RecordingElbo:
    """A Pyro ELBO stand-in that records each step's ``kl_weight`` (``"absent"`` without)."""

    def __init__(self, inner):
        self.inner, self.weights = inner, []

    def loss_and_grads(self, *args, **kwargs):
        self.weights.append(kwargs.pop("kl_weight", "absent"))
        return self.inner.loss_and_grads(*args, **kwargs)


def test_pyro_kl_weights_reach_each_step():
    eng = engine("pyro", LRSchedule(LR))
    eng.elbo = RecordingElbo(eng.elbo)
    eng.run(IDX[:2])
    eng.run(IDX[2:5], kl_weights=np.array([0.25, 0.5, 1.0]))
    assert eng.elbo.weights == ["absent", "absent", 0.25, 0.5, 1.0]
    assert all(type(w) is float for w in eng.elbo.weights[2:])


class PenalizedElbo:
    """A NumPyro ELBO stand-in: ``kl_weight * sum(params**2)`` added to the loss, so each
    step's weight changes its gradient; a NaN weight makes the step's loss NaN."""

    def __init__(self, inner):
        self.inner = inner

    def loss(self, rng_key, params, model, guide, *args, kl_weight=None, **kwargs):
        value = self.inner.loss(rng_key, params, model, guide, *args, **kwargs)
        if kl_weight is None:
            return value
        return value + kl_weight * sum(jnp.sum(p ** 2) for p in params.values())


def test_numpyro_kl_weights_reach_each_step_and_the_replay():
    weights = np.array([0.5, 2.0, 1.0, 0.25], np.float32)
    stepwise = engine("numpyro", LRSchedule(LR))
    stepwise.svi.loss = PenalizedElbo(stepwise.svi.loss)
    after = []
    for t in range(4):
        stepwise.run(IDX[t:t + 1], kl_weights=weights[t:t + 1])
        after.append(stepwise.get_params())
    whole = engine("numpyro", LRSchedule(LR))
    whole.svi.loss = PenalizedElbo(whole.svi.loss)
    assert whole.run(IDX[:4], kl_weights=weights).failure is None
    for name, value in after[3].items():  # step t of the chunk used weights[t]
        np.testing.assert_array_equal(whole.get_params()[name], value, err_msg=name)
    unweighted = engine("numpyro", LRSchedule(LR))
    unweighted.run(IDX[:4])
    assert any(not np.array_equal(unweighted.get_params()[name], value)
               for name, value in after[3].items())  # the weights changed the steps

    bad = engine("numpyro", LRSchedule(LR))
    bad.svi.loss = PenalizedElbo(bad.svi.loss)
    result = bad.run(IDX[:4], kl_weights=np.array([0.5, 2.0, np.nan, 0.25]))
    assert result.failure is not None and result.failure.index == 2
    for name, value in after[1].items():  # the replay of steps 0 and 1 used their weights
        np.testing.assert_array_equal(bad.get_params()[name], value, err_msg=name)
