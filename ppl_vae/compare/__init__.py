"""The posterior × prior comparison: grids of (spec, seed) cells on a local pool or Ray.

``cells``      one cell: train a spec with a seed, evaluate on the test split; keyed settings
``executors``  a local process pool (one thread per worker) or Ray tasks
``grid``       plan, run (skipping finished cells, one retry), collect, write
``summary``    mean ± se over seeds, datapoints and combined; paired per-datapoint log p(x)
               differences; importance flags

>>> cells = plan(["gaussian_gaussian", "laplace_laplace"], seeds=[0, 1, 2],
...              dataset="mnist5k", num_steps=500)                       # doctest: +SKIP
>>> result = run_grid(cells, "compare-out", LocalPool())                 # doctest: +SKIP
"""

from ppl_vae.compare.cells import Cell, CellResult, run_cell
from ppl_vae.compare.executors import EXECUTORS, LocalPool, RayExecutor, make_executor
from ppl_vae.compare.grid import GridResult, collect, plan, run_grid, write_grid
from ppl_vae.compare.summary import paired_differences, summarize

__all__ = ["EXECUTORS", "Cell", "CellResult", "GridResult", "LocalPool", "RayExecutor",
           "collect", "make_executor", "paired_differences", "plan", "run_cell", "run_grid",
           "summarize", "write_grid"]
