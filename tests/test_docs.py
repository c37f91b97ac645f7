"""The documentation cannot drift from the code: the spec-format tables list every field, the
API reference every public name, and every generated snippet a page includes is generated.

Fast and without MkDocs: reads the generator (``docs/gen_spec_reference.py``) and the pages'
Markdown; the strict site build itself is ``scripts/docs.sh`` (CI runs it after the tests).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from ppl_vae import families
from ppl_vae.networks import NetworkSpec
from ppl_vae.spec import ConditionSpec, ModelSpec, TrainingDefaults

DOCS = Path(__file__).resolve().parents[1] / "docs"
PACKAGES = ("spec", "families", "models", "estimators", "data", "training", "evaluation",
            "diagnostics", "variance", "compare", "runs")
SPEC_CLASSES = (ModelSpec, TrainingDefaults, ConditionSpec, NetworkSpec)
FAMILIES = [(role, name, cls) for role, table in (("posterior", families.POSTERIORS),
                                                  ("prior", families.PRIORS),
                                                  ("likelihood", families.LIKELIHOODS))
            for name, cls in table.items()]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return _load("gen_spec_reference")


@pytest.fixture(scope="module")
def reference(generator):
    return generator.reference()


def _rows(markdown: str) -> dict[str, str]:
    """``{field: description}`` of every table row ``| `field` | type | default | text |``."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\| `(\w+)` \|.*\| ([^|]*) \|$", markdown, flags=re.M)}


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda c: c.__name__)
def test_spec_tables_list_every_field_with_a_description(cls, generator):
    rows = _rows(generator.table(cls))
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(rows) == names, f"{cls.__name__}'s table is not its dataclass fields"
    undocumented = [n for n in names if not rows[n]]
    assert not undocumented, (f"{cls.__name__}: no description for {undocumented}; add them "
                              "to the docstring's Attributes section")


@pytest.mark.parametrize("role, name, cls", FAMILIES, ids=[f"{r}-{n}" for r, n, _ in FAMILIES])
def test_every_family_and_option_is_in_the_spec_reference(role, name, cls, reference):
    start = reference.index(f"#### `family = \"{name}\"` ({cls.__name__})",
                            reference.index(f"### `[{role}]` families"))
    end = reference.find("\n####", start + 1)
    section = reference[start:] if end < 0 else reference[start:end]
    options = families.family_options(cls)
    assert options == tuple(f.name for f in dataclasses.fields(cls))
    rows = _rows(section)
    assert list(rows) == list(options)
    assert all(rows.values()), f"{cls.__name__}: an option without a description: {rows}"


def _documented_names(page: str) -> set[str]:
    members = re.findall(r"^\s+- (\w+)$", page, flags=re.M)
    directives = [p.rsplit(".", 1)[-1] for p in re.findall(r"^::: ([\w.]+)", page, flags=re.M)]
    return set(members) | set(directives)


@pytest.mark.parametrize("package", PACKAGES)
def test_api_reference_lists_every_public_name(package):
    module = importlib.import_module(f"ppl_vae.{package}")
    page = (DOCS / "api" / f"{package}.md").read_text(encoding="utf-8")
    assert re.search(rf"^::: ppl_vae\.{package}$", page, flags=re.M)
    missing = sorted(set(module.__all__) - _documented_names(page))
    assert not missing, f"docs/api/{package}.md does not document {missing}"


def test_top_level_page_lists_every_public_name():
    import ppl_vae

    page = (DOCS / "api" / "ppl_vae.md").read_text(encoding="utf-8")
    missing = [n for n in ppl_vae.__all__ if f"| `{n}` |" not in page]
    assert not missing, f"docs/api/ppl_vae.md does not list {missing}"


def test_every_included_snippet_is_generated():
    build = _load("build_examples")
    generated = {f"{name}.md" for name in [*build.RUNS, *build.COMMANDS]} | {"spec-reference.md"}
    included = {m for page in DOCS.rglob("*.md") if "generated" not in page.parts
                for m in re.findall(r'--8<-- "([^"]+)"', page.read_text(encoding="utf-8"))}
    assert included <= generated, f"pages include snippets nobody writes: {included - generated}"
    folders = {m for page in DOCS.rglob("*.md") if "generated" not in page.parts
               for m in re.findall(r"\]\(\.\./generated/([^/)]+)/",
                                   page.read_text(encoding="utf-8"))}
    assert folders <= {n.removesuffix(".md") for n in generated}, "figures of no example run"
