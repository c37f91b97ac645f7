"""ppl_vae.models.conditioning: label checks, and the tools that refuse conditional VAEs by name."""

import numpy as np
import pytest

import ppl_vae.models
from ppl_vae.compare import plan
from ppl_vae.diagnostics import diagnose
from ppl_vae.models.conditioning import check_labels
from ppl_vae.variance import load_target

CVAE = ppl_vae.models.load_spec("cvae_mnist")


def test_labels_are_checked_against_the_spec():
    np.testing.assert_array_equal(check_labels(CVAE, [0, 9, 3.0], 3), [0, 9, 3])
    assert check_labels(CVAE, np.array([0, 9]), 2).dtype == np.int64
    for labels, match in (([0, 10], r"must lie in 0\.\.9.*found 10"), ([-1, 0], "found -1"),
                          ([0.5, 1], "integer class labels"), ([0, 1, 2], r"shape \(2,\)"),
                          (None, r"pass c= \(the labels")):
        with pytest.raises(ValueError, match=match):
            check_labels(CVAE, labels, 2)
    plain = ppl_vae.models.load_spec("gaussian_gaussian")
    assert check_labels(plain, None, 2) is None
    with pytest.raises(ValueError, match="not conditioned on a label"):
        check_labels(plain, [0, 1], 2)


def test_tools_without_labels_refuse_a_conditional_vae_by_name():
    vae = ppl_vae.models.build(CVAE, "numpyro")
    x = np.zeros((2, 784), np.float32)
    message = (r"does not take class labels yet.*'cvae_mnist'.*ppl-vae evaluate "
               r"\(importance_sample\(\.\.\., c=\), ais_log_likelihood\(\.\.\., c=\)\)")
    with pytest.raises(ValueError, match="diagnose .*" + message):
        diagnose(vae, x)
    with pytest.raises(ValueError, match="the comparison grid " + message):
        plan(["cvae_mnist"], [0])
    with pytest.raises(ValueError, match="the variance study " + message):
        load_target(CVAE, "numpyro", batch_size=4)
