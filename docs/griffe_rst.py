"""A griffe extension: the reST bits of ppl_vae's NumPy-style docstrings, as Markdown.

The docstrings are written for readers of the source (and Sphinx-like tools): cross-references
are roles (``:func:`fit```, ``:class:`~ppl_vae.spec.ModelSpec```) and display math is a
``.. math::`` directive. mkdocstrings renders Markdown, so before rendering:

* ``.. math:: ...`` (with its indented continuation) becomes a ``$$ ... $$`` block and
  ``:math:`...``` inline ``\\( ... \\)``, which ``pymdownx.arithmatex`` hands to MathJax;
* ``:func:`name``` (and ``class``, ``meth``, ``mod``, ``data``, ``attr``, ``exc``, ``obj``)
  becomes an *optional* autorefs cross-reference: a link where the target is rendered in the
  API reference, inline code where it is not (private helpers are not documented pages);
* a paragraph ending in ``::`` (a reST literal block) ends in ``:``;
* a section entry ``name : what it is`` (the house style: the text after the colon is a
  description, not a type) becomes ``name`` with that description indented below it, so the
  reference shows it as the description.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_SECTION_ENTRY = re.compile(r"^(\s*)([\w*][\w, *]*?) : (.+)$")
_ENTRY_SECTIONS = {"parameters", "other parameters", "attributes", "returns", "yields",
                   "raises", "warns", "receives"}


def _entries(text: str) -> str:
    lines, section = text.split("\n"), None
    for i, line in enumerate(lines):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if nxt and set(nxt) == {"-"} and line.strip():
            section, base = line.strip().lower(), len(line) - len(line.lstrip())
            continue
        match = _SECTION_ENTRY.match(line)
        if section in _ENTRY_SECTIONS and match and len(match.group(1)) == base:
            lines[i] = f"{match.group(1)}{match.group(2)}\n{match.group(1)}    {match.group(3)}"
    return "\n".join(lines)


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj``'s scope, or ``name`` itself."""
    name = name.lstrip(".")
    if name.startswith("ppl_vae"):
        return name
    scope = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        try:
            return scope.resolve(name)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
    return name


def _role(obj: griffe.Object, match: re.Match) -> str:
    short, target = match.group(2) == "~", match.group(3).strip()
    path = _resolve(obj, target.rstrip("()"))
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'


def _math_blocks(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body = match.group(1), [match.group(2)] if match.group(2) else []
        i += 1
        while i < len(lines) and (not lines[i].strip() and not body
                                  or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        out += [indent + "$$", *(indent + b for b in body if b), indent + "$$"]
    return "\n".join(out)


def markdown(obj: griffe.Object, text: str) -> str:
    """The docstring ``text`` of ``obj`` with its reST constructs turned into Markdown."""
    text = _entries(_math_blocks(text))
    text = _MATH_ROLE.sub(lambda m: rf"\({m.group(1)}\)", text)
    text = _ROLE.sub(lambda m: _role(obj, m), text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)


class ReSTToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is fully loaded (so names resolve)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._walk(pkg, seen=set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)
