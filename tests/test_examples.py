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


def test_examples_exist():
    assert {"quickstart.py", "quickstart_numpyro.py"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_with_smoke_arguments(path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [str(path), "--smoke", "--out-dir", str(out)])
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None)
    assert out.is_dir() and any(out.iterdir()), "an example writes its results to --out-dir"
    assert capsys.readouterr().out.strip(), "an example reports what it did"
