"""The progress of a grid: a tqdm bar of cells done, running and left with an ETA, and one
line per finished or failed cell.

The bar goes to stderr and only to a terminal (tqdm's ``disable=None``); the lines always go
to ``say`` (through ``tqdm.write`` while a bar is shown, so they do not tear it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm


class GridProgress:
    """Counts for ``total`` cells; ``capacity()`` says how many run at once."""

    def __init__(self, total: int, capacity: Callable[[], int],
                 say: Callable[[str], None] | None, *, bar: bool = False) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._capacity = capacity
        self._say = say
        self._bar = tqdm(total=total, unit="cell", desc="cells", file=sys.stderr,
                         disable=None if bar and say is not None else True, dynamic_ncols=True)
        self._update()

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    @property
    def running(self) -> int:
        return min(self.left, max(1, self._capacity())) if self.left else 0

    def status(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.done} of {self.total} done{failed}, {self.running} running, "
                f"{self.left - self.running} waiting")

    def line(self, text: str) -> None:
        if self._say is None:
            return
        if self._bar.disable:
            self._say(text)
        else:
            self._bar.write(text, file=sys.stdout)

    def finished(self, key: str) -> None:
        self.done += 1
        self._bar.update(1)
        self._update()
        self.line(f"cell {key} done ({self.status()})")

    def gave_up(self, key: str, error: str) -> None:
        self.failed += 1
        self._bar.update(1)
        self._update()
        self.line(f"cell {key} failed again: {error} ({self.status()})")

    def close(self) -> None:
        self._bar.close()

    def _update(self) -> None:
        if not self._bar.disable:
            self._bar.set_postfix_str(f"{self.running} running, {self.left - self.running} waiting",
                                      refresh=True)
