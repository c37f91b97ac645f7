"""The spec format's field tables, generated from the dataclasses so they cannot drift.

Walks ``ModelSpec``, ``TrainingDefaults``, ``ConditionSpec`` (``ppl_vae/spec.py``),
``NetworkSpec`` (``ppl_vae/networks.py``) and every family in ``ppl_vae.families``'
``POSTERIORS``, ``PRIORS`` and ``LIKELIHOODS`` (their options: ``family_options``), and writes
one Markdown table per TOML table: field, type, default and the description from the class
docstring's ``Attributes`` section. ``tests/test_docs.py`` checks that every field is there.

    python docs/gen_spec_reference.py OUT.md
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ppl_vae import families  # noqa: E402
from ppl_vae.networks import NetworkSpec  # noqa: E402
from ppl_vae.spec import ConditionSpec, ModelSpec, TrainingDefaults  # noqa: E402

_ROLE = re.compile(r":(?:\w+):`~?([^`]+)`")


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the NumPy-style ``Attributes`` section of ``cls``'s
    docstring (``a, b : text`` documents both; continuation lines are joined)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Attributes\n-+\n(.*?)(?:\n\n|\Z)", doc, flags=re.S | re.M)
    if not match:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in match.group(1).splitlines():
        entry = re.match(r"^([\w*][\w, *]*?) : (.*)$", line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                out[name] = entry.group(2).strip()
        elif line.startswith(" ") and names:
            for name in names:
                out[name] += " " + line.strip()
    return {k: _ROLE.sub(r"`\1`", v) for k, v in out.items()}


def _type(f: dataclasses.Field) -> str:
    return str(f.type).replace("|", "\\|")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return f"`{type(value).__name__}()`"
    else:
        return "*required*"
    if value is None:
        return "left out"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float) and not value.is_integer() and abs(value) < 1e-2:
        return f"`{value:.3g}`"
    return f"`{value!r}`".replace("'", '"').replace("|", "\\|")


def table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """One Markdown table: every dataclass field of ``cls`` but ``skip``."""
    docs = attribute_docs(cls)
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            rows.append(f"| `{f.name}` | `{_type(f)}` | {_default(f)} | "
                        f"{docs.get(f.name, '').replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def _summary(cls: type) -> str:
    return _ROLE.sub(r"`\1`", inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]).replace(
        "\n", " ")


def family_tables(role: str, table_: dict[str, type]) -> str:
    parts = [f"### `[{role}]` families\n",
             f"`family = ` one of {', '.join(f'`{n}`' for n in table_)}; the options below "
             "are the other keys of the table.\n"]
    for name, cls in table_.items():
        parts.append(f"#### `family = \"{name}\"` ({cls.__name__})\n\n{_summary(cls)}\n")
        options = families.family_options(cls)
        if options:
            assert options == tuple(f.name for f in dataclasses.fields(cls))
            parts.append(table(cls) + "\n")
        else:
            parts.append("No options.\n")
    return "\n".join(parts)


def reference() -> str:
    """The whole generated section of the spec-format page."""
    return "\n".join([
        "### Top level\n",
        _summary(ModelSpec) + " `posterior`, `prior`, `likelihood`, `encoder`, `decoder`, "
        "`training` and `condition` are TOML tables (below).\n",
        table(ModelSpec) + "\n",
        "### `[encoder]` and `[decoder]`\n",
        _summary(NetworkSpec) + "\n",
        table(NetworkSpec) + "\n",
        "### `[training]`\n",
        _summary(TrainingDefaults) + " Each field is also a `fit` keyword and a flag of "
        "`ppl-vae train` / `compare` (hyphenated).\n",
        table(TrainingDefaults) + "\n",
        "### `[condition]`\n",
        _summary(ConditionSpec) + "\n",
        table(ConditionSpec) + "\n",
        family_tables("posterior", families.POSTERIORS),
        family_tables("prior", families.PRIORS),
        family_tables("likelihood", families.LIKELIHOODS),
    ])


def write(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference(), encoding="utf-8")
    return path


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "generated"
          / "spec-reference.md")
