import pytest

from ppl_vae.bench import roofline
from ppl_vae.models import load_spec


def test_flop_counts_of_the_standard_vae():
    spec = load_spec("gaussian_gaussian")  # 784-400-(2x20) encoder, 20-400-784 decoder
    assert roofline.dominant_product(spec) == (400, 784)
    assert roofline.pair_flops(spec) == 2 * (20 * 400 + 400 * 784)
    enc = 2 * 128 * (784 * 400 + 400 * 40)
    dec = 2 * 128 * (20 * 400 + 400 * 784)
    assert roofline.gradient_flops(spec, 128) == 3 * (enc + dec) - 2 * 128 * 784 * 400
    assert roofline.gradient_flops(spec, 128, particles=5) == \
        3 * (enc + 5 * dec) - 2 * 128 * 784 * 400


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_matmul_rate_is_a_positive_flop_rate(backend):
    rate = roofline.matmul_rate(backend, 64, 32, 16, seconds=0.01)
    assert 1e6 < rate < 1e15
