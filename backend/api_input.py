"""What the API accepts before any serializer sees it: JSON the database can store, sane query values.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``1e400`` (which overflows to infinity) as
floats, and ``"\\u0000"`` or a lone ``"\\ud800"`` as strings; none of them can be stored
(PostgreSQL's ``jsonb`` refuses all four, and UTF-8 has no lone surrogates), so a request
carrying one deep inside a JSON field such as a run's ``config`` used to end in a 500.
``StrictJSONParser`` refuses them at the door with a 400 that names where they are
(``config.share``, ``fsts[2]``), and answers a body nested too deeply for the parser with a 400
instead of a ``RecursionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

#: The largest primary key the database holds (a signed 64-bit ``bigint``).
MAX_ID = 2**63 - 1


def _member(where: str, key: Any) -> str:
    """``config.share``; a key that would not read as one (empty, dotted) as ``config[""]``."""
    text = str(key)
    if text and not any(c in text for c in '.[]"'):
        return f"{where}.{text}" if where else text
    return f"{where}[{json.dumps(text)}]"


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(path, item)`` in a parsed JSON value, keys included, without recursion."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if isinstance(item, Mapping):
            for key, child in item.items():
                child_path = _member(where, key)
                yield child_path, key
                stack.append((child_path, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_value_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first ``(path, reason)`` in ``value`` that JSON storage cannot take, or ``None``.

    The path is empty when ``value`` itself is the problem.

    Refused: non-finite numbers (``NaN``, ``Infinity``), and strings (keys too) holding a NUL
    character or a lone UTF-16 surrogate.
    """
    for where, item in _walk(value, path):
        if isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            return where, f"{name} is not a number JSON can hold (give a finite one)"
        if isinstance(item, str):
            if "\x00" in item:
                return where, "contains a NUL character (\\u0000)"
            if _has_lone_surrogate(item):
                return where, "contains a lone UTF-16 surrogate, which is not text"
    return None


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing what the database cannot store with a 400 naming the field."""

    #: Non-finite constants are read (as floats) so that the error can say where they are;
    #: they are refused in ``parse`` with everything else JSON storage cannot take.
    strict = False

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None
        problem = json_value_problem(data)
        if problem is not None:
            where, reason = problem
            raise ParseError({where or "non_field_errors": [reason]})
        return data


def query_id(request: Request, name: str) -> int | None:
    """The query parameter ``name`` as a primary key, ``None`` when absent or blank.

    Raises DRF's ``ValidationError`` (400, keyed by ``name``) for anything but decimal digits
    naming a possible key: ``?dataset=²`` or a 5000-digit number used to end in a 500.
    """
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_ID:
        raise ValidationError(
            {name: [f"must be an id (an integer 0-{MAX_ID}), got {value[:40]!r}"]}
        )
    return int(value)


def query_choice(request: Request, name: str, choices: list[str]) -> str | None:
    """The query parameter ``name`` if it is one of ``choices``; ``None`` when absent or blank.

    Raises DRF's ``ValidationError`` (400, keyed by ``name``) for any other value, naming the
    choices, rather than filtering on text the database may refuse (PostgreSQL refuses NUL).
    """
    value = request.query_params.get(name, "")
    if not value:
        return None
    if value not in choices:
        raise ValidationError(
            {name: [f"unknown {name} {value[:40]!r} (known: {', '.join(choices)})"]}
        )
    return value
