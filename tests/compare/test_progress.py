"""The grid's progress lines: cells done, failed, running and waiting."""

from ppl_vae.compare.progress import GridProgress


def test_progress_counts_done_failed_running_and_waiting_cells():
    lines = []
    progress = GridProgress(4, lambda: 2, lines.append)
    assert progress.status() == "0 of 4 done, 2 running, 2 waiting"
    progress.finished("a")
    progress.gave_up("b", "RuntimeError: lost")
    progress.finished("c")
    progress.close()
    assert lines == ["cell a done (1 of 4 done, 2 running, 1 waiting)",
                     "cell b failed again: RuntimeError: lost (1 of 4 done, 1 failed, "
                     "2 running, 0 waiting)",
                     "cell c done (2 of 4 done, 1 failed, 1 running, 0 waiting)"]


def test_progress_without_a_say_prints_nothing(capsys):
    progress = GridProgress(1, lambda: 1, None, bar=True)
    progress.finished("a")
    progress.close()
    assert capsys.readouterr() == ("", "")
