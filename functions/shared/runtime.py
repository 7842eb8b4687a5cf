"""One runtime per container: built at first use (the cold start), then reused by every invocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """A handler's runtime singleton: ``factory()`` runs once, on the first ``get()``.

    Tests replace it with ``Lazy.of(runtime)``.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        """An already-built runtime (what tests hand a handler)."""
        lazy = cls(lambda: value)
        lazy._value = value
        return lazy

    def get(self) -> T:
        if self._value is None:
            self._value = self._factory()
        return self._value
