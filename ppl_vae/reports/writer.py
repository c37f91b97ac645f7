"""The Markdown/HTML writer of every report.

A :class:`Report` collects
headings, text, tables (pandas) and matplotlib figures, then writes ``NAME.md`` (figures
as PNG files beside it) and a self-contained ``NAME.html`` (figures embedded as base64) that
fits its window: images scale down to the text width, a wide table scrolls in its own box.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ppl_vae.io import atomic_write_bytes, atomic_write_text

LEVELS = {"good": "🟢", "caution": "🟠", "bad": "🔴"}
"""Traffic-light levels of :meth:`Report.callout` and their Markdown marks (HTML: a dot in
the level's colour)."""


@dataclass
class Report:
    """An ordered list of blocks rendered to Markdown and HTML."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> Report:
        self.blocks.append(("heading", text))
        return self

    def text(self, text: str) -> Report:
        self.blocks.append(("text", text))
        return self

    def link(self, text: str, href: str, note: str = "") -> Report:
        """A paragraph with a link (relative paths stay relative in both formats)."""
        self.blocks.append(("link", (text, href, note)))
        return self

    def callout(self, level: str, text: str) -> Report:
        """A traffic-light note: ``level`` in :data:`LEVELS` (good, caution, bad)."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
        self.blocks.append(("callout", (level, text)))
        return self

    def table(self, df: pd.DataFrame, caption: str = "", floatfmt: str = ".4g") -> Report:
        self.blocks.append(("table", (df, caption, floatfmt)))
        return self

    def figure(self, fig: Any, name: str, caption: str = "") -> Report:
        """Add a matplotlib figure (rendered to PNG now, then closed)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.image(buf.getvalue(), name, caption)

    def image(self, png: bytes, name: str, caption: str = "") -> Report:
        """Add a PNG image given as bytes."""
        self.blocks.append(("figure", (name, png, caption)))
        return self

    def write(self, folder: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``stem.md``, ``stem.html`` and ``figures/*.png`` under ``folder``."""
        folder = Path(folder)
        md, body = [f"# {self.title}", ""], [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                md += [f"## {value}", ""]
                body.append(f"<h2>{html.escape(value)}</h2>")
            elif kind == "text":
                md += [value, ""]
                body.append(f"<p>{html.escape(value)}</p>")
            elif kind == "link":
                text, href, note = value
                md += [f"[{text}]({href}){note}", ""]
                body.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a>'
                            f"{html.escape(note)}</p>")
            elif kind == "callout":
                level, text = value
                md += [f"> {LEVELS[level]} **{level}**: {text}", ""]
                body.append(f'<p class="callout {level}"><span class="dot">●</span> '
                            f"<b>{level}</b>: {html.escape(text)}</p>")
            elif kind == "table":
                df, caption, fmt = value
                md += ([f"*{caption}*", ""] if caption else []) + [
                    df.to_markdown(index=False, floatfmt=fmt), ""]
                body.append((f"<p><em>{html.escape(caption)}</em></p>" if caption else "")
                            + '<div class="scroll">'
                            + df.to_html(index=False, float_format=lambda v, f=fmt: format(v, f),
                                         border=0) + "</div>")
            else:
                name, png, caption = value
                rel = f"figures/{stem}-{name}.png"
                atomic_write_bytes(folder / rel, png)
                md += [f"![{caption or name}]({rel})", ""] + ([f"*{caption}*", ""]
                                                               if caption else [])
                b64 = base64.b64encode(png).decode()
                body.append(f'<figure><img src="data:image/png;base64,{b64}" '
                            f'alt="{html.escape(name)}"><figcaption>{html.escape(caption)}'
                            "</figcaption></figure>")
        md_path, html_path = folder / f"{stem}.md", folder / f"{stem}.html"
        atomic_write_text(md_path, "\n".join(md))
        atomic_write_text(html_path, _HTML.format(title=html.escape(self.title),
                                                  body="\n".join(body)))
        return md_path, html_path


def machine_description() -> str:
    """One line naming the machine, for reports that quote timings."""
    import os

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;
text-align:right}}img{{max-width:100%;height:auto}}figure{{margin:1em 0}}
.scroll{{overflow-x:auto;max-width:100%}}h1,h2,p,figcaption{{overflow-wrap:anywhere}}
.callout{{padding:.4em .8em;border-left:.4em solid}}.good{{border-color:#2a2;background:#efe}}
.caution{{border-color:#e90;background:#fff6e6}}.bad{{border-color:#d22;background:#fee}}
.good .dot{{color:#2a2}}.caution .dot{{color:#e90}}.bad .dot{{color:#d22}}
</style></head>
<body>
{body}
</body></html>
"""
