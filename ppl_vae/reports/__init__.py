"""Reports: every figure, the report pages, and the Markdown/HTML writer.

``writer``   :class:`Report`: headings, text, tables and figures -> ``NAME.md`` (figures as
             PNGs beside it) and a self-contained ``NAME.html``
``figures``  every plot and image grid of the package
``pages``    the run, diagnostics and gradient-variance pages
``tables``   small tables the pages show, shaped from stored ones

Reports render what the jobs computed and stored; they never recompute.
"""

from ppl_vae.reports.writer import Report, machine_description

__all__ = ["Report", "machine_description"]
