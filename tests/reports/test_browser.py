"""Every report page kind (run, comparison, diagnostics, gradient variance, bench) in a real
headless browser (Debian's chromium) at 1280 px: no console error, every image decoded, and
nothing wider than the window (a wide table scrolls inside its own box).

chromium's ``--dump-dom`` prints the DOM after the page's scripts ran, and
``--enable-logging=stderr`` prints every console message as ``CONSOLE`` lines. The pages have
no scripts of their own, so the test loads a copy with one appended script that counts the
images the browser failed to decode and the elements that stick out of the window (outside
any box that scrolls or clips), and writes the counts into the DOM.
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
WIDTH = 1280
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--window-size={WIDTH},900", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000")

PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  if (broken) console.error(`${broken} images failed to decode`);
  const clipped = el => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return true;
    }
    return false;
  };
  const wide = [...document.body.querySelectorAll("*")].filter(
    el => el.getBoundingClientRect().right > window.innerWidth + 0.5 && !clipped(el));
  document.body.insertAdjacentHTML("beforeend",
    `<p id="probe">images=${images.length} broken=${broken} width=${window.innerWidth} ` +
    `scroll=${document.documentElement.scrollWidth} wide=${wide.length} ` +
    `first=${wide.slice(0, 3).map(el => el.tagName).join(",")}.</p>`);
});</script>"""


def _load(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    probe = tmp_path / f"probe-{page.parent.name}-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    profile = tmp_path / f"profile-{page.parent.name}-{page.stem}"  # a fresh one per page
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


def _check(page: Path, tmp_path: Path, min_images: int, min_tables: int) -> str:
    dom, console = _load(page, tmp_path)
    assert console == [], console
    found = re.search(r'id="probe">images=(\d+) broken=(\d+) width=(\d+) scroll=(\d+) '
                      r"wide=(\d+) first=([A-Z0-9,]*)\.<", dom)
    assert found, "the probe script did not run"
    images, broken, width, scroll, wide = map(int, found.groups()[:5])
    assert images >= min_images and broken == 0
    assert width == WIDTH
    # nothing sticks out of the window: the page does not scroll sideways and no element
    # outside a scrolling box reaches past the window's right edge
    assert scroll <= WIDTH and wide == 0, f"{wide} elements wider than the page, first " \
                                          f"{found.group(6)}; scrollWidth {scroll}"
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


def test_diagnostics_page_fits_the_window(grid, tmp_path):
    """The diagnostics page holds the widest tables (ArviZ's summary, guide vs MCMC)."""
    from tests.commands.test_diagnose import TINY

    folder, cells = grid
    run_dir = folder / "cells" / cells[1].key()
    assert main(["diagnose", str(run_dir), "--datapoints", "2", *TINY]) == 0
    # k̂ histogram, trace, rank, pair plot, gaps, collapse, history
    dom = _check(run_dir / "diagnostics.html", tmp_path, min_images=7, min_tables=6)
    assert 'class="scroll"' in dom


def test_variance_page_fits_the_window(tmp_path):
    from tests.variance.test_study import TINY_TOML

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    out = tmp_path / "study"
    assert main(["variance", str(spec), "--estimators", "reparam,score", "--particles", "1,3",
                 "--draws", "12", "--batch-size", "8", "--train-steps", "2", "--out", str(out),
                 "--quiet"]) == 0
    _check(out / "report.html", tmp_path, min_images=4, min_tables=2)


@pytest.mark.slow  # ppl-vae bench --quick: about a minute
def test_bench_page_fits_the_window(tmp_path):
    out = tmp_path / "bench"
    assert main(["--threads", "1", "bench", "--quick", "--quiet", "--out", str(out)]) == 0
    _check(out / "report.html", tmp_path, min_images=1, min_tables=3)
