import pandas as pd

from ppl_vae.bench.scaling import nonlinear_growth


def test_nonlinear_growth_names_the_rows_off_linear():
    table = pd.DataFrame({
        "backend": ["pyro"] * 6, "factor": ["K"] * 3 + ["batch size"] * 3,
        "value": [500, 2000, 8000, 32, 128, 512], "seconds": [1.0, 4.2, 26.0, 1.0, 0.4, 0.2],
        "unit": ["s/evaluation"] * 3 + ["s/epoch"] * 3,
        "relative_size": [1.0, 4.0, 16.0, 1.0, 4.0, 16.0],
        "relative_cost": [1.0, 4.2, 26.0, 1.0, 0.4, 0.2]})
    off = nonlinear_growth(table)
    # K: 4.2x for 4x is within 25%, 26x for 16x is not; batch size is not expected linear
    assert list(off["value"]) == [8000]
