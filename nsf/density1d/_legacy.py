"""Hand-written list validation, kept only for :mod:`nsf.boundary2d` (chapter 05), which imports
it from :mod:`nsf.density1d` until its setup is a pydantic dataclass like :class:`DensityDemo`.
Chapter 04 itself validates with :mod:`nsf.validation`."""

from __future__ import annotations

__all__ = ["as_tuple"]


def as_tuple(name: str, value, kind: type) -> tuple:
    """``value`` (a list or tuple of numbers) as a tuple of ``kind``; a clear ``ValueError`` for a
    string (papermill's ``-p`` passes lists as text: use ``-y`` or ``nsf run -p``) or a
    non-number. Integers must be whole numbers."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"{name}={value!r} must be a list of numbers, not {type(value).__name__}; "
            "with papermill pass lists as YAML (-y) or use `nsf run -p`"
        )
    out = []
    for item in value:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"{name} holds {item!r}, which is not a number") from None
        if kind is int:
            if not number.is_integer():
                raise ValueError(f"{name} holds {item!r}; iterations must be whole numbers")
            number = int(number)
        out.append(number)
    return tuple(out)
