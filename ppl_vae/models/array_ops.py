"""The operations families, networks and programs use, written once where torch and
``jax.numpy`` agree.

Each backend's ``ops`` (:class:`~ppl_vae.models.pyro_backend.TorchOps`,
:class:`~ppl_vae.models.numpyro_backend.JaxOps`) subclasses :class:`ArrayOps` with ``xp`` (its
array module), :meth:`ArrayOps.like` (the dtype and device keywords of a new array) and the
operations whose names or arguments differ between the libraries.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ArrayOps:
    """Array operations by name; ``SHARED`` are taken from ``xp`` as they are (torch and
    ``jax.numpy`` give them the same name and meaning). A subclass sets ``xp``,
    ``FunctionalDistribution`` and ``like(x)``: the keywords that give a new array the dtype
    (and device) of ``x``."""

    xp: ClassVar[Any]
    like: ClassVar[Any]
    FunctionalDistribution: ClassVar[type]
    SHARED: ClassVar[tuple[str, ...]] = ("abs", "log", "exp", "expm1", "log1p", "logaddexp",
                                         "round", "where", "tanh", "clip", "broadcast_to",
                                         "moveaxis", "isfinite")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.SHARED:
            setattr(cls, name, staticmethod(getattr(cls.xp, name)))

    @classmethod
    def full(cls, like: Any, shape: tuple[int, ...], value: float) -> Any:
        return cls.xp.full(shape, value, **cls.like(like))

    @classmethod
    def eye(cls, like: Any, n: int) -> Any:
        return cls.xp.eye(n, **cls.like(like))

    @classmethod
    def arange(cls, like: Any, n: int) -> Any:
        return cls.xp.arange(n, **cls.like(like))

    @classmethod
    def asarray(cls, like: Any, values: Any) -> Any:
        """``values`` (e.g. a NumPy constant) as an array of ``like``'s dtype and device."""
        return cls.xp.asarray(values, **cls.like(like))

    @classmethod
    def sum(cls, x: Any, axes: tuple[int, ...], keepdims: bool = False) -> Any:
        return cls.xp.sum(x, axis=axes, keepdims=keepdims)

    @classmethod
    def concat(cls, parts: list[Any]) -> Any:
        """Concatenation along the last axis."""
        return cls.xp.concatenate(parts, axis=-1)

    @classmethod
    def flip(cls, x: Any) -> Any:
        """``x`` with its last axis reversed."""
        return cls.xp.flip(x, (-1,))

    @classmethod
    def functional_distribution(cls, **kwargs: Any) -> Any:
        """The backend's :class:`~ppl_vae.models._core.FunctionalDistributionBase`."""
        return cls.FunctionalDistribution(**kwargs)
