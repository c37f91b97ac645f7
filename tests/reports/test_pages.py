"""ppl-vae report: the run's own tables, rendered (and nothing recomputed)."""

import json
import re

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
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]  # metrics' key
    pd.DataFrame({"run": [run_id], "split": ["test"], "metric": ["log_px_iwae"],
                  "value": [-43.21], "stderr": [0.05]}).to_csv(run_dir / "metrics.csv",
                                                               index=False)
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "report.md").read_text()
    for section in ("## Headline (test split)", "## Settings", "## Training",
                    "## All metrics", "## Samples and reconstructions"):
        assert section in md
    assert "-43.21" in md and "log_px_iwae" in md
    assert "do not record the training step" in md  # metrics without their step: caution
    assert re.search(r"\| training\.num_steps +\| 30 ", md)  # settings as a table, not a dict
    history = pd.read_csv(run_dir / "history.csv")
    last_valid = history[history["split"] == "valid"].sort_values("step").iloc[-1]
    assert f"{last_valid['loss']:.4g}" in md
    html = (run_dir / "report.html").read_text()
    # curves, samples, reconstructions, the latent scatter, traversals, interpolations
    assert html.count("data:image/png;base64,") == 6
    codes = pd.read_csv(run_dir / "latents.csv")
    assert len(codes) == 180 and codes["label"].nunique() == 10  # digits: 10% of 1797


def test_report_warns_when_metrics_are_older_than_the_parameters(tmp_path):
    spec = load_spec("gaussian_gaussian").replace(
        name="tiny", data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    import tomli_w

    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(tomli_w.dumps(spec.to_dict()))
    run_dir = tmp_path / "run"
    train = ["train", str(spec_path), "--dataset", "digits", "--batch-size", "32",
             "--out", str(run_dir), "--quiet"]
    assert main([*train, "--steps", "20"]) == 0
    assert main(["evaluate", str(run_dir), "--num-samples", "10", "--num-points", "20",
                 "--model-samples", "0"]) == 0
    metrics = pd.read_csv(run_dir / "metrics.csv").set_index("metric")
    assert metrics.loc["checkpoint_step", "value"] == 20
    assert main(["report", str(run_dir)]) == 0
    assert "stale" not in (run_dir / "report.md").read_text()
    assert main([*train, "--steps", "30", "--resume"]) == 0
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "report.md").read_text()
    assert "stale: the metrics were computed at step 20, but the parameters are at step 30" in md
