"""The bench times importance sampling in the chunks the sampler itself uses, for every zoo
model (a spec whose likelihood or prior holds more numbers per pair gets smaller chunks)."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vae.bench.throughput import importance_product
from ppl_vae.evaluation import importance_sample
from ppl_vae.models import build, load_spec, zoo_names

NUM_SAMPLES, NUM_DATA = 5000, 40


class _Recorded(Exception):
    """Raised by the recording ``weigh`` once it has seen the first chunk plan."""


def _data(spec, rng):
    shape = (NUM_DATA, spec.data_dim)
    kind = spec.likelihood.data_kind
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float32)
    if kind == "eight-bit":
        return rng.integers(0, 256, shape).astype(np.float32)
    return rng.uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize("name", zoo_names())
def test_the_bench_product_is_the_samplers_chunk(name, monkeypatch):
    spec = load_spec(name)
    vae = build(spec, "pyro", num_data=NUM_DATA)
    x = _data(spec, np.random.default_rng(0))
    seen = {}

    def weigh(xb, idx, num_samples, per_chunk, *args, **kwargs):
        seen.update(rows=xb.shape[0], per_chunk=per_chunk)
        raise _Recorded

    monkeypatch.setattr(vae, "weigh", weigh)
    labels = None if spec.condition is None else np.zeros(NUM_DATA, dtype=np.int64)
    idx = None if spec.posterior.amortized else np.arange(NUM_DATA)
    with pytest.raises(_Recorded):
        importance_sample(vae, x, NUM_SAMPLES, idx=idx, c=labels)
    rows, inner, cols = importance_product(spec, NUM_SAMPLES, NUM_DATA)
    assert rows == seen["rows"] * seen["per_chunk"]
    assert (inner, cols) != (0, 0)
