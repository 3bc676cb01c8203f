"""Plain data values in and out of a sandbox, as tagged JSON; standard library only.

A sandboxed program's return values come back through a channel it can write, so the harness never trusts
anything in them but their *values*: `encode` turns a value into plain types (an int subclass or a numpy
integer into an int, a str subclass into a str, ...) and anything else into a marker, so no object with its
own `__eq__` survives the trip, and `decode` (in the judge, outside the tested program's reach) rebuilds
exactly those plain values. The tags keep list/tuple/set/dict and float specials (nan, inf, -0.0) apart.

This file is also passed into sandboxes as source (`SOURCE`), so it imports nothing of the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 1_000_000


class NotPlain(ValueError):
    """A value that has no plain-data form (an object, a function, too deep or too big)."""


def encode(value: Any) -> Any:
    """The value as JSON-able tagged data; raises NotPlain for anything that is not plain data."""
    budget = [MAX_NODES]

    def enc(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise NotPlain("too deep or too big")
        if x is None:
            return ["n"]
        if isinstance(x, bool) or type(x).__name__ == "bool_":
            return ["B", bool(x)]
        if isinstance(x, float) or type(x).__name__ in ("float16", "float32", "float64", "longdouble"):
            return ["f", float.hex(float(x))]
        if isinstance(x, int) or (hasattr(type(x), "__index__") and not isinstance(x, (str, bytes))):
            try:
                return ["i", str(int.__index__(x) if isinstance(x, int) else type(x).__index__(x))]
            except TypeError:
                raise NotPlain(f"{type(x).__name__} is not plain data") from None
        if isinstance(x, complex):
            return ["c", float.hex(complex(x).real), float.hex(complex(x).imag)]
        if isinstance(x, str):
            return ["s", str.__str__(x)]
        if isinstance(x, (bytes, bytearray)):
            return ["y", bytes(x).hex()]
        if isinstance(x, tuple):
            return ["t", [enc(v, depth + 1) for v in tuple.__iter__(x)]]
        if isinstance(x, list):
            return ["l", [enc(v, depth + 1) for v in list.__iter__(x)]]
        if isinstance(x, (set, frozenset)):
            return ["S" if isinstance(x, set) else "F", [enc(v, depth + 1) for v in (set.__iter__(x) if isinstance(x, set) else frozenset.__iter__(x))]]
        if isinstance(x, dict):
            return ["d", [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in dict.items(x)]]
        raise NotPlain(f"{type(x).__name__} is not plain data")

    return enc(value, 0)


def decode(data: Any) -> Any:
    """Plain values from `encode`'s output; raises NotPlain on anything malformed (never evaluates code)."""
    budget = [MAX_NODES]

    def dec(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0 or not isinstance(x, list) or not x or not isinstance(x[0], str):
            raise NotPlain("malformed value")
        tag, rest = x[0], x[1:]
        try:
            if tag == "n" and not rest:
                return None
            if tag == "B" and len(rest) == 1 and isinstance(rest[0], bool):
                return rest[0]
            if tag == "f" and len(rest) == 1:
                return float.fromhex(rest[0])
            if tag == "i" and len(rest) == 1 and isinstance(rest[0], str) and len(rest[0]) <= 10_000:
                return int(rest[0])
            if tag == "c" and len(rest) == 2:
                return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
            if tag == "s" and len(rest) == 1 and isinstance(rest[0], str):
                return rest[0]
            if tag == "y" and len(rest) == 1:
                return bytes.fromhex(rest[0])
            if tag in "tlSF" and len(rest) == 1 and isinstance(rest[0], list):
                items = [dec(v, depth + 1) for v in rest[0]]
                return {"t": tuple, "l": list, "S": set, "F": frozenset}[tag](items)
            if tag == "d" and len(rest) == 1 and isinstance(rest[0], list):
                return {dec(k, depth + 1): dec(v, depth + 1) for k, v in rest[0]}
        except (TypeError, ValueError, OverflowError):
            pass
        raise NotPlain(f"malformed value with tag {tag[:8]!r}")

    return dec(data, 0)


SOURCE = Path(__file__).read_text()
