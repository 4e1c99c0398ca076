"""Keyword shorthand for small option objects: ``iterative_prune(iterations=3)`` = ``StopCriteria(3)``.

Long functions (``iterative_prune``, ``sweep``) take their related settings as small frozen
dataclasses; the fields may also be given as plain keywords, which this module gathers into them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from edgeprune.errors import InvalidConfigError

T = TypeVar("T")


def gather(cls: type[T], given: T | None, kwargs: dict[str, Any], names: dict[str, str], where: str) -> T:
    """``given``, or a ``cls`` built from the keywords ``names`` (keyword -> field) popped from ``kwargs``."""
    picked = {field: kwargs.pop(key) for key, field in names.items() if key in kwargs}
    if given is not None and picked:
        raise InvalidConfigError(
            f"{where}: give either {cls.__name__}(...) or its keywords {', '.join(sorted(picked))}, not both")
    return given if given is not None else cls(**picked)


def refuse_unknown(kwargs: dict[str, Any], where: str, known: list[str]) -> None:
    """The error Python gives for an unexpected keyword, listing the keywords that build option objects."""
    if kwargs:
        raise TypeError(f"{where}() got unexpected keyword argument(s) {', '.join(sorted(kwargs))}; "
                        f"option keywords: {', '.join(sorted(known))}")
