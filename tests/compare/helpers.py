"""What the comparison tests share: tiny specs and settings, and a synthetic executor."""

from pathlib import Path

import pandas as pd

TINY = """
name = "{name}"
latent_dim = 2
data_shape = [64]
kl = "{kl}"

[posterior]
family = "{posterior}"

[prior]
family = "{prior}"

[likelihood]
family = "bernoulli"

[encoder]
hidden = [8]

[decoder]
hidden = [8]

[training]
dataset = "digits"
batch_size = 32
"""
SETTINGS = {"dataset": "digits", "num_steps": 6, "num_samples": 20, "eval_points": 16,
            "model_samples": 20}
KINDS = (("tiny_gauss", "analytic", "gaussian", "standard-normal"),
         ("tiny_laplace", "monte-carlo", "laplace", "learned-laplace"))


def write_specs(folder: Path) -> list[str]:
    """The two tiny specs (a Gaussian and a Laplace VAE on 8×8 digits) as files."""
    paths = []
    for name, kl, posterior, prior in KINDS:
        path = folder / f"{name}.toml"
        path.write_text(TINY.format(name=name, kl=kl, posterior=posterior, prior=prior))
        paths.append(str(path))
    return paths


class SyntheticExecutor:
    """'Finishes' every cell with a synthetic two-datapoint result (no training); fails the
    cell keyed ``flaky`` on its first attempt and ``broken`` always. ``calls`` lists the
    keys of each ``run``."""

    name = "synthetic"

    def __init__(self, flaky=None, broken=None):
        self.flaky, self.broken, self.calls = flaky, broken, []

    def run(self, cells, root):
        from ppl_vae.compare.cells import CellResult

        self.calls.append(sorted(c.key() for c in cells))
        for cell in cells:
            if cell.key() == self.broken or (cell.key() == self.flaky and len(self.calls) == 1):
                yield cell, RuntimeError(f"worker lost\nwhile running {cell.key()}")
                continue
            points = pd.DataFrame({"datapoint": [0, 1], "source_row": [5, 9], "label": [1, 2],
                                   "log_px": [-1.0 - cell.seed, -2.0], "log_px_se": 0.0,
                                   "elbo": -3.0})
            metrics = pd.DataFrame({"metric": ["log_px"], "value": [points["log_px"].mean()],
                                    "stderr": [0.1]})
            yield cell, CellResult(cell, metrics, points, "IS, K = 20")
