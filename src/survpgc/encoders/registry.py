"""The registry both encoder families use: specs by case-insensitive name, in registration order."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from survpgc.errors import InputError, UnknownNameError

__all__ = ["SpecRegistry"]

S = TypeVar("S")


class SpecRegistry(Generic[S]):
    """Specs (objects with a ``name``) keyed by lower-cased name; ``kind`` names them in error messages.

    An unknown name raises :class:`~survpgc.errors.UnknownNameError` (the same error as the model registry),
    with ``unknown_hint`` appended to its message.
    """

    def __init__(self, kind: str, unknown_hint: str = "") -> None:
        self.kind = kind
        self.unknown_hint = unknown_hint
        self.specs: dict[str, S] = {}

    def register(self, spec: S, *, overwrite: bool = False) -> S:
        key = str(spec.name).lower()  # type: ignore[attr-defined]
        if key in self.specs and not overwrite:
            raise InputError(f"{self.kind} {spec.name!r} is already registered (pass overwrite=True to replace it)")  # type: ignore[attr-defined]
        self.specs[key] = spec
        return spec

    def list(self) -> list[S]:
        return list(self.specs.values())

    def __contains__(self, name: Any) -> bool:
        return str(name).strip().lower() in self.specs

    def get(self, name: Any) -> S:
        try:
            return self.specs[str(name).strip().lower()]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self.specs), self.unknown_hint) from None
