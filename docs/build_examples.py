"""Generate what the documentation shows: the examples' real output and figures, the spec tables.

    python docs/build_examples.py            # writes docs/generated/ (git-ignored)

Each tutorial is tied to a script in ``examples/``; this runs them at a small budget (a few
hundred steps, not the full one) and captures, per run, its text output as
``docs/generated/NAME.md`` (a fenced block the pages include with ``pymdownx.snippets``) and
its figures as ``docs/generated/NAME/*.png``. The spec-format tables come from
``docs/gen_spec_reference.py``; ``COMMANDS`` runs ``ppl-vae`` subcommands (the quick bench)
the same way. Runs go two at a time, one thread each, the longest (the 8-bit conv VAE) first;
the whole generation takes two minutes (idle) to three and a half (loaded) on two cores.
Any failing example fails the docs build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "generated"
sys.path.insert(0, str(ROOT / "docs"))

RUNS = {
    # name: (script, arguments); every run also gets --out-dir. The longest goes first.
    "eight-bit": ("eight_bit_images.py", ["--backend", "pyro", "--num-steps", "400",
                                          "--num-samples", "50"]),
    "quickstart-pyro": ("quickstart.py", ["--backend", "pyro", "--num-epochs", "4"]),
    "quickstart-numpyro": ("quickstart.py", ["--backend", "numpyro", "--num-epochs", "4"]),
    "compare": ("compare_posteriors.py", ["--smoke", "--workers", "1"]),
    "variance": ("variance_study.py", ["--smoke"]),
    "diagnose": ("diagnose_posterior.py", ["--backend", "numpyro", "--num-steps", "1000",
                                           "--datapoints", "0", "1", "--chains", "2",
                                           "--draws", "200"]),
    "likelihood": ("evaluate_likelihood.py", ["--smoke"]),
    "own-data": ("own_data.py", ["--num-steps", "500"]),
    "conditional": ("conditional_vae.py", ["--backend", "numpyro", "--num-epochs", "30",
                                           "--num-samples", "500"]),
}
COMMANDS = {
    # name: arguments of the `ppl-vae` command line (run as `python -c` on ppl_vae.cli.main),
    # captured the same way; each also gets --out.
    "bench": ["bench", "--quick"],
}


def _env() -> dict[str, str]:
    return os.environ | {"JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
                         "MKL_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
                             filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _run(name: str, script: str | None, args: list[str], work: Path) -> tuple[str, float]:
    """Run ``examples/SCRIPT ARGS --out-dir`` (or, with ``script`` None, ``ppl-vae ARGS
    --out``) in ``work``; write its output as ``NAME.md`` and its figures under ``NAME/``."""
    out_dir = work / name
    if script is None:
        command = [sys.executable, "-c", "import sys; from ppl_vae.cli import main; "
                   "sys.exit(main(sys.argv[1:]))", *args, "--out", str(out_dir)]
        shown = " ".join(["ppl-vae", *args, "--out", f"{name}/"])
    else:
        command = [sys.executable, str(ROOT / "examples" / script), *args,
                   "--out-dir", str(out_dir)]
        shown = " ".join(["python", f"examples/{script}", *args])
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=work)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shown} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    text = proc.stdout.replace(str(work) + os.sep, "").rstrip()
    (OUT / f"{name}.md").write_text(f"```console\n$ {shown}\n{text}\n```\n", encoding="utf-8")
    figures = OUT / name
    for png in sorted(out_dir.rglob("*.png")):
        target = figures / png.relative_to(out_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
    return name, seconds


def main() -> None:
    import gen_spec_reference

    start = time.perf_counter()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    gen_spec_reference.write(OUT / "spec-reference.md")
    with tempfile.TemporaryDirectory(prefix="ppl-vae-docs-") as tmp, \
            ThreadPoolExecutor(max_workers=2) as pool:
        runs = [(name, script, args) for name, (script, args) in RUNS.items()]
        runs += [(name, None, args) for name, args in COMMANDS.items()]
        jobs = [pool.submit(_run, name, script, args, Path(tmp)) for name, script, args in runs]
        for job in jobs:
            name, seconds = job.result()
            print(f"docs: {name} in {seconds:.0f} s", flush=True)
    print(f"docs: generated {OUT.relative_to(ROOT)} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
