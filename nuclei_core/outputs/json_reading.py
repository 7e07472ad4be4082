"""Strict JSON read as a stream with ijson, for files too large to hold as one tree of Python objects: the
caller is handed the file's value as built so far after every chunk, and takes the finished entries out of it."""

from __future__ import annotations

import gzip
import itertools
import re
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any

import ijson

from ..errors import InputError

_CHUNK_BYTES = 1 << 16


class _Wrapper(dict):
    """The object ijson builds around the file's JSON value: it reads ``{"value": <the file>}``, so that the
    value can be reached while it is being built. A second member is text after the file's value (noted here:
    ijson's C backend loses an exception raised while it builds an object)."""

    def __init__(self) -> None:
        super().__init__()
        self.members = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.members += 1
        super().__setitem__(key, value)


class _Source:
    """The file as ijson reads it, inside ``{"value": ...}``; before each chunk, ``collect(value, False)`` is
    handed the file's value as built so far."""

    def __init__(self, handle: IO[bytes], collect: Callable[[Any, bool], None]) -> None:
        self.wrapper = _Wrapper()
        self.collect = collect
        self.ended = False  # the file's last byte has been handed to ijson
        self.pieces = self._pieces(handle)

    def _pieces(self, handle: IO[bytes]) -> Iterator[bytes]:
        yield b'{"value":'
        yield from iter(partial(handle.read, _CHUNK_BYTES), b"")
        self.ended = True
        yield b"}"

    def read(self, size: int = -1) -> bytes:
        """The next piece of the text (any size); b"" at the end."""
        if size == 0:  # ijson's check for a binary file
            return b""
        self.collect(self.value(), False)
        return next(self.pieces, b"")

    def value(self) -> Any:
        return self.wrapper.get("value")

    def error(self, error: ijson.JSONError) -> str:
        """yajl's message in one line; a file that ends early (all of it read, the value incomplete) says so."""
        message = error.args[0] if error.args else ""
        if isinstance(message, bytes):  # ijson's message about invalid UTF-8
            message = message.decode("utf-8", "replace")
        lines = str(message).splitlines() or ["unreadable"]
        # yajl quotes the text around the error, with the character it stopped at in column 40
        constant = re.match(r"-?(NaN|Infinity)", lines[1][39:]) if len(lines) > 1 else None
        if constant:
            return f"{constant.group()} is not a number in strict JSON"
        return "parse error: premature EOF" if self.ended and "trailing garbage" not in lines[0] else lines[0]


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def stream_json(path: Path, collect: Callable[[Any, bool], None]) -> None:
    """Parse ``path`` (gzipped when it ends with .gz) with ijson, strictly (no NaN or Infinity): after every
    chunk, ``collect(value, False)`` with the file's JSON value as built so far, then ``collect(value, True)``
    once the whole file is valid JSON. ``collect`` takes what it needs out of the lists being filled."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            source = _Source(handle, collect)
            # ijson makes every JSON object with map_type(): the first one it makes is the wrapper
            objects = itertools.chain([source.wrapper], iter(dict, None)).__next__
            try:
                for _ in ijson.items(source, "", map_type=objects, use_float=True):
                    pass
            except ijson.JSONError as exc:
                raise InputError(f"{path.name} is not valid JSON: {source.error(exc)}") from None
            if source.wrapper.members > 1:
                raise InputError(f"{path.name} is not valid JSON: parse error: trailing garbage")
            collect(source.value(), True)
    except FileNotFoundError:
        raise InputError(f"annotation file not found: {path}") from None
    except (OSError, EOFError, zlib.error, RecursionError) as exc:  # EOFError, zlib.error: a damaged .gz
        raise InputError(f"{path.name} is not valid JSON: {_first_line(exc)}") from None


def take_complete(entries: list, complete: bool) -> list:
    """The entries of a list that ijson is filling which are complete (all once ``complete``, else all but the
    last, which may be half built), taken out of the list."""
    end = len(entries) if complete else len(entries) - 1
    taken = entries[:max(end, 0)]
    del entries[:max(end, 0)]
    return taken
