"""The JSON shape of a run config, checked against its dataclass's type hints before it is built.

The config dataclasses check values and ranges and raise ``ValueError`` naming the field. What
they were never written for is JSON of the wrong shape: ``{"fsts": 5}`` reached
``tuple(5)`` and came back as "'int' object is not iterable", ``{"ratios": ["x"]}`` as "could
not convert string to float: 'x'", neither saying which field. Every config arriving from the
API, a launch form or the command line is checked here first, so the message starts with the
field's path (``fsts``, ``fsts[0]``, ``balancing.dark_fsts``), as the dataclasses' own do.

Only what the type hints say is checked: a JSON list where the hint is a tuple, integers where
it is ``int`` (JSON ``64.0`` is not 64 here either), numbers where it is ``float``, strings,
booleans, ``null`` where it is optional, objects for nested config dataclasses. Keys the
dataclass does not have are left to it (it names them), and so is every range.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from backend.api_input import json_value_problem

_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _describe(hint: Any) -> str:
    """``tuple[int, ...]`` -> "a list of integers"; ``int | None`` -> "an integer or null"."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1:
            return f"a list of {_PLURALS.get(items[0], 'items')}"
        return "a list"
    if dataclasses.is_dataclass(hint):
        return "an object"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        type(None): "null",
    }.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _matches(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` has the JSON shape of ``hint``; ``None`` when the hint is not checked."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        verdicts = [_matches(arg, value) for arg in typing.get_args(hint)]
        if any(verdicts):
            return True
        return None if None in verdicts else False
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping) or isinstance(value, hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return None


def _chosen(hint: Any, value: Any) -> Any:
    """The member of a union that ``value`` matches (to look inside lists and objects)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if _matches(arg, value):
                return arg
    return hint


def shape_problem(config_type: type, data: Mapping[str, Any], prefix: str = "") -> str | None:
    """The first field of ``data`` whose JSON shape does not fit ``config_type``, as a message.

    Args:
        config_type (`type`): A config dataclass.
        data (`Mapping[str, Any]`): The config as parsed JSON.
        prefix (`str`): Path of ``data`` inside the top-level config (``"balancing."``).

    Returns:
        ``"<path>: must be <shape>, got <value>"``, or ``None`` when every known field fits.
    """
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        if not field.init or field.name not in data:
            continue
        path = f"{prefix}{field.name}"
        hint, value = hints[field.name], data[field.name]
        if _matches(hint, value) is False:
            return f"{path}: must be {_describe(hint)}, got {_short(value)}"
        hint = _chosen(hint, value)
        if typing.get_origin(hint) in (tuple, list):
            items = [a for a in typing.get_args(hint) if a is not Ellipsis]
            if len(items) == 1:
                for index, item in enumerate(value):
                    if _matches(items[0], item) is False:
                        return f"{path}[{index}]: must be {_describe(items[0])}, got {_short(item)}"
        elif dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            problem = shape_problem(hint, value, f"{path}.")  # type: ignore[arg-type]
            if problem is not None:
                return problem
    return None


def config_problem(config_type: type, data: Any) -> str | None:
    """Why ``data`` cannot be ``config_type``'s JSON, before its own checks; ``None`` if it may.

    An object is required; then nothing JSON storage refuses (NaN, Infinity, NUL, lone
    surrogates), then the shape of every known field (``shape_problem``).
    """
    if not isinstance(data, Mapping):
        return f"must be a JSON object of settings, got {type(data).__name__} {_short(data)}"
    storage = json_value_problem(data)
    if storage is not None:
        return f"{storage[0]}: {storage[1]}"
    return shape_problem(config_type, data)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def qualify(config_type: type, message: str) -> str:
    """Prefix a nested config's error with the field that holds it.

    A nested dataclass (``balancing`` of the conditional model, ``classifier`` of a downstream
    experiment) names only its own field: "dark_fst_factor: ...". When that name is not a
    field of ``config_type`` itself but of exactly one nested config, the message becomes
    "balancing.dark_fst_factor: ...", so the API says where it is and a launch form can put
    it beside the right input.
    """
    name, colon, rest = message.partition(":")
    if not colon or not name or " " in name.strip():
        return message
    name = name.strip()
    top = {f.name for f in dataclasses.fields(config_type)}
    if name.split("[")[0].split(".")[0] in top:
        return message
    hints = typing.get_type_hints(config_type)
    holders = [
        f.name
        for f in dataclasses.fields(config_type)
        if dataclasses.is_dataclass(_chosen(hints[f.name], {}))
        and name.split("[")[0] in {g.name for g in dataclasses.fields(_chosen(hints[f.name], {}))}
    ]
    if len(holders) != 1:
        return message
    return f"{holders[0]}.{name}:{rest}"
