"""Every script in ``examples/`` runs with ``--smoke`` (tiny arguments) and ``--out-dir``.

Convention for examples: ``main(args)``, argparse with hyphenated long flags, ``--smoke`` for
a run of seconds and ``--out-dir`` for everything written. New examples are found by the glob.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))
QUICKSTART = EXAMPLES[0].with_name("quickstart.py")
CASES = [(p, []) for p in EXAMPLES] + [(QUICKSTART, ["--backend", "numpyro"])]


def test_examples_exist():
    assert QUICKSTART in EXAMPLES


@pytest.mark.parametrize("path, extra", CASES,
                         ids=[p.stem + "".join(e[1:]) for p, e in CASES])
def test_example_runs_with_smoke_arguments(path, extra, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [str(path), "--smoke", "--out-dir", str(out), *extra])
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None)
    assert out.is_dir() and any(out.iterdir()), "an example writes its results to --out-dir"
    assert capsys.readouterr().out.strip(), "an example reports what it did"
