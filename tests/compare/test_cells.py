"""A cell's key: the .npz array names enter it only when set, so the cells of grids written
before they existed keep their keys (and are skipped on a re-run)."""

import dataclasses
import hashlib
import json

from ppl_vae.compare.cells import Cell


def test_unset_npz_keys_leave_the_key_of_an_older_cell_unchanged():
    cell = Cell(spec_toml="name = 'a'\n", spec_name="a", seed=1, dataset="digits")
    older = {k: v for k, v in dataclasses.asdict(cell).items()
             if k not in ("images_key", "labels_key")}
    digest = hashlib.sha256(json.dumps(older, sort_keys=True).encode()).hexdigest()[:10]
    assert cell.key() == f"a-seed1-{digest}"
    keyed = dataclasses.replace(cell, dataset="mine.npz", images_key="pixels")
    assert keyed.key() != dataclasses.replace(cell, dataset="mine.npz").key()
