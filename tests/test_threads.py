import os

import pytest
import torch

from ppl_vae import threads
from ppl_vae.cli import main


def test_default_threads_leaves_the_loaded_cores_alone(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert threads.default_threads() == 8
    monkeypatch.setattr(os, "getloadavg", lambda: (5.4, 0.0, 0.0))
    assert threads.default_threads() == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.default_threads() == 2


def test_set_threads_sets_torch_and_auto_keeps_an_explicit_choice(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "default_threads", lambda: 2)
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.set_threads("auto") == 1  # the explicit choice wins over the default
        monkeypatch.setattr(threads, "_chosen", None)
        assert threads.set_threads("auto") == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_check_threads_refuses_non_positive_integers(bad):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        threads.check_threads(bad)


def test_cli_threads_option_refuses_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", "report", "nowhere"])
    assert exit_info.value.code == 2
    assert "positive integer or auto" in capsys.readouterr().err
