"""ppl-vae report: the run's own tables, rendered (and nothing recomputed)."""

import pandas as pd

from ppl_vae.cli import main
from ppl_vae.models import load_spec
from ppl_vae.spec import NetworkSpec


def test_report_renders_what_the_jobs_wrote(tmp_path):
    spec = load_spec("gaussian_gaussian").replace(
        name="tiny", data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(16,)),
        decoder=NetworkSpec(hidden=(16,)))
    import tomli_w

    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(tomli_w.dumps(spec.to_dict()))
    run_dir = tmp_path / "run"
    assert main(["train", str(spec_path), "--backend", "pyro", "--dataset", "digits",
                 "--steps", "30", "--batch-size", "32", "--out", str(run_dir), "--quiet"]) == 0
    assert main(["sample", str(run_dir)]) == 0
    pd.DataFrame({"run": ["run"], "split": ["test"], "metric": ["log_px_iwae"],
                  "value": [-43.21], "stderr": [0.05]}).to_csv(run_dir / "metrics.csv",
                                                               index=False)
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "report.md").read_text()
    for section in ("## Model", "## Training", "## Evaluation", "## Samples"):
        assert section in md
    assert "-43.21" in md and "log_px_iwae" in md
    history = pd.read_csv(run_dir / "history.csv")
    last_valid = history[history["split"] == "valid"].sort_values("step").iloc[-1]
    assert f"{last_valid['loss']:.4g}" in md
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # curves, samples, reconstructions
