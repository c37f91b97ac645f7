"""What every family shares: the map from raw network outputs to scales, and option checks."""

from __future__ import annotations

import math
from typing import Any

INV_SOFTPLUS_ONE = math.log(math.expm1(1.0))
"""softplus⁻¹(1): raw value at which a ``softplus`` scale starts at 1."""


def positive(ops: Any, raw: Any, floor: float) -> Any:
    """Map an unconstrained value to a scale: ``softplus(raw) + floor`` (Shu 2018: no
    variance can collapse to zero)."""
    return ops.softplus(raw) + floor


def check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")


def check_count(field: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 1."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
