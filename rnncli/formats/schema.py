"""Reading back what rnncli wrote: JSON that parses is not yet valid input.

A schema is a plain value: a type (`int`, `float`, `str`, `bool`, `dict` for any object; an int is
not a bool, a float accepts an int), a dict {field: schema} (an object with at least those fields), `ListOf(s)`,
`MapOf(s)` (an object whose every value is s; `keys` a test of its keys), `Pair(a, b)` (a list of
two), `Either(a, b, ...)`, `Optional(s)` (s or null). `check` raises one line naming the file and
the field: `OUT.parts/manifest.json: parts.3.items must be an integer, not "x"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rnncli.errors import RnncliError


@dataclass(frozen=True)
class ListOf:
    item: object


@dataclass(frozen=True)
class MapOf:
    value: object
    keys: Callable[[str], bool] | None = None
    keys_are: str = ""  # what the keys must be, for the message


@dataclass(frozen=True)
class Pair:
    first: object
    second: object


@dataclass(frozen=True)
class Either:
    options: tuple

    def __init__(self, *options):
        object.__setattr__(self, "options", options)


def Optional(schema):  # noqa: N802 - reads as the type it stands for
    return Either(schema, None)


NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", None: "null"}


def _describe(schema) -> str:
    if isinstance(schema, dict | MapOf) or schema is dict:
        return "an object"
    if isinstance(schema, ListOf):
        return "a list"
    if isinstance(schema, Pair):
        return "a list of two"
    if isinstance(schema, Either):
        return " or ".join(_describe(s) for s in schema.options)
    return NAMES.get(schema, str(schema))


def _fits(value, schema) -> bool:
    if schema is None:
        return value is None
    if schema is bool:
        return isinstance(value, bool)
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if schema is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if schema is str:
        return isinstance(value, str)
    if isinstance(schema, dict | MapOf) or schema is dict:
        return isinstance(value, dict)
    if isinstance(schema, ListOf):
        return isinstance(value, list)
    if isinstance(schema, Pair):
        return isinstance(value, list) and len(value) == 2
    raise TypeError(f"not a schema: {schema!r}")


def _shown(value) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(value, schema, where: str, field: str = "") -> None:
    """Raise RnncliError (one line, `where` and the field named) unless `value` fits `schema`."""
    at = field or "the document"
    if isinstance(schema, Either):
        for option in schema.options:
            try:
                check(value, option, where, field)
                return
            except RnncliError:
                continue
        raise RnncliError(f"{where}: {at} must be {_describe(schema)}, not {_shown(value)}")
    if not _fits(value, schema):
        raise RnncliError(f"{where}: {at} must be {_describe(schema)}, not {_shown(value)}")
    prefix = f"{field}." if field else ""
    if isinstance(schema, dict):
        for name, inner in schema.items():
            if name not in value:
                raise RnncliError(f"{where}: {prefix}{name} is missing")
            check(value[name], inner, where, prefix + name)
    elif isinstance(schema, MapOf):
        for key, inner_value in value.items():
            if schema.keys is not None and not schema.keys(key):
                raise RnncliError(f"{where}: {prefix}{key} is not {schema.keys_are or 'a valid key'}")
            check(inner_value, schema.value, where, prefix + key)
    elif isinstance(schema, ListOf):
        for i, item in enumerate(value):
            check(item, schema.item, where, f"{prefix}{i}")
    elif isinstance(schema, Pair):
        check(value[0], schema.first, where, f"{prefix}0")
        check(value[1], schema.second, where, f"{prefix}1")
