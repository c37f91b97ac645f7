"""Both report pages in a real headless browser (Debian's chromium): they load without
console errors and show their tables and images, every image decoded.

chromium's ``--dump-dom`` prints the DOM after the page's scripts ran, and
``--enable-logging=stderr`` prints every console message as ``CONSOLE`` lines. The pages have
no scripts of their own, so the test loads a copy with one appended script that counts the
images the browser failed to decode and writes the counts into the DOM.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ppl_vae.cli import main
from ppl_vae.compare import collect, plan, write_grid
from ppl_vae.compare.cells import run_cell, write_result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                             "scripts/setup.sh installs it when run as root")

PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  if (broken) console.error(`${broken} images failed to decode`);
  document.body.insertAdjacentHTML("beforeend",
    `<p id="probe">images=${images.length} broken=${broken}</p>`);
});</script>"""


def _load(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    probe = tmp_path / f"probe-{page.parent.name}-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    run = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox",
                          "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


def _check(page: Path, tmp_path: Path, min_images: int, min_tables: int) -> str:
    dom, console = _load(page, tmp_path)
    assert console == [], console
    found = re.search(r'id="probe">images=(\d+) broken=(\d+)<', dom)
    assert found, "the probe script did not run"
    assert int(found.group(1)) >= min_images and int(found.group(2)) == 0
    assert dom.count("<table") >= min_tables
    return dom


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two specs, one seed, trained and evaluated in this process (no pool)."""
    from tests.compare.helpers import SETTINGS
    from tests.compare.helpers import TINY as TOML

    folder = tmp_path_factory.mktemp("grid")
    specs = []
    for name, kl, post, prior in (("tiny_gauss", "analytic", "gaussian", "standard-normal"),
                                  ("tiny_laplace", "monte-carlo", "laplace", "learned-laplace")):
        path = folder / f"{name}.toml"
        path.write_text(TOML.format(name=name, kl=kl, posterior=post, prior=prior))
        specs.append(path)
    cells = plan(specs, [0], **SETTINGS)
    for cell in cells:
        write_result(folder, run_cell(cell, folder))
    result = collect(cells, folder)
    write_grid(result, folder, cells=cells)
    return folder, cells


def test_comparison_report_loads_with_table_and_images(grid, tmp_path):
    folder, _ = grid
    # the forest plot, the learning curves and one sample grid per spec
    dom = _check(folder / "report.html", tmp_path, min_images=4, min_tables=3)
    assert "Paired differences against tiny_gauss" in dom and "★" in dom


def test_run_report_loads_with_headline_warnings_and_images(grid, tmp_path):
    folder, cells = grid
    run_dir = folder / "cells" / cells[0].key()
    assert main(["sample", str(run_dir), "--num-reconstructions", "16"]) == 0
    assert main(["report", str(run_dir)]) == 0
    # curves, per-dimension bars, samples, reconstructions, latent scatter, traversals,
    # interpolations
    dom = _check(run_dir / "report.html", tmp_path, min_images=7, min_tables=3)
    assert "Headline (test split)" in dom and 'class="callout' in dom
    assert "kl_dim_0" not in dom  # per-dimension metrics are a chart, not rows
