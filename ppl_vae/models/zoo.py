"""The model zoo: the TOML specs shipped in ``models/`` (installed as ``ppl_vae.zoo``), by name."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ppl_vae import spec as spec_module
from ppl_vae.spec import ModelSpec, SpecError


def _zoo_files() -> dict[str, Traversable]:
    """The shipped spec files by model name (an installed package or a source checkout)."""
    try:
        root: Traversable = resources.files("ppl_vae.zoo")
    except ModuleNotFoundError:  # a source checkout without an install: models/ at the top
        root = Path(__file__).resolve().parents[2] / "models"
    return {f.name.removesuffix(".toml"): f for f in root.iterdir() if f.name.endswith(".toml")}


def zoo_names() -> list[str]:
    """Names of the model specs shipped with ppl_vae (the ``models/`` folder)."""
    return sorted(_zoo_files())


def load_spec(spec: ModelSpec | str | Path) -> ModelSpec:
    """A spec from a :class:`ModelSpec`, a TOML path, or the name of a zoo model."""
    if isinstance(spec, ModelSpec):
        return spec
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return spec_module.load(path)
    zoo = _zoo_files()
    if spec in zoo:
        return spec_module.loads(zoo[spec].read_text(), source=f"zoo model {spec!r}")
    raise SpecError(f"{spec!r} is neither a spec file nor a zoo model; zoo models: "
                    f"{', '.join(sorted(zoo))}")
