"""Strict JSON written as a stream: a whole slide's million nuclei never become one string or one tree."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
CHUNK = 2000  # items encoded together: C-speed encoding, a few MB at a time


def write_array_items(handle: TextIO, items: Iterable[Any]) -> int:
    """Write ``items`` comma-separated (the inside of a JSON array) to ``handle``; returns how many."""
    iterator, count = iter(items), 0
    while chunk := list(itertools.islice(iterator, CHUNK)):
        handle.write(("," if count else "") + ENCODER.encode(chunk)[1:-1])
        count += len(chunk)
    return count


def write_object_with_array(handle: TextIO, header: dict[str, Any], key: str, items: Iterable[Any]) -> int:
    """Write ``{**header, key: [items...]}`` to ``handle`` with the items streamed; returns how many."""
    opening = ENCODER.encode(header)[:-1]
    handle.write(f"{opening}{',' if len(opening) > 1 else ''}{ENCODER.encode(key)}:[")
    count = write_array_items(handle, items)
    handle.write("]}")
    return count


class LazySequence(Sequence):
    """``make(i)`` for every i of ``indices``, made when read: a view of a table as JSON items, not a list."""

    def __init__(self, make: Callable[[int], Any], indices: range) -> None:
        self._make, self._indices = make, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._make(i) for i in self._indices[index]]
        return self._make(self._indices[index])

    def __iter__(self) -> Iterator[Any]:
        return map(self._make, self._indices)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so not hashable
