"""Typed readers for settings that come from the environment, failing loudly on bad values.

Every reader raises ``ImproperlyConfigured`` whose message starts with the variable's name,
so a typo in a deployment stops start-up instead of silently falling back to a default
(cf. healthchecks' ``hc/settings.py``). Secrets may also be given as ``NAME_FILE`` pointing
at a file (Docker secrets).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MISSING: Any = object()

DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql"}
BROKER_SCHEMES = {"redis", "rediss", "filesystem", "memory", "amqp", "pyamqp"}
_DEVICE_RE = re.compile(r"\A(auto|cpu|mps|cuda(:\d+)?)\Z")


class Env:
    """Read typed values from a mapping (``os.environ`` by default)."""

    def __init__(self, environ_: Mapping[str, str] | None = None, base_dir: Path | None = None):
        self._environ = os.environ if environ_ is None else environ_
        self._base_dir = base_dir or Path.cwd()

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value if value != "" else None

    def _missing(self, name: str, default: Any) -> Any:
        if default is _MISSING:
            raise ImproperlyConfigured(f"{name}: required environment variable is not set")
        return default

    def str(self, name: str, default: Any = _MISSING) -> Any:
        value = self._raw(name)
        return self._missing(name, default) if value is None else value

    def secret(self, name: str, default: Any = _MISSING) -> Any:
        """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
        file_name = self._raw(f"{name}_FILE")
        if file_name is not None:
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc}") from exc
        return self.str(name, default)

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name}: expected a boolean (1/0, true/false, yes/no, on/off), got {value!r}"
        )

    def int(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        min_value: int | None = None,
        max_value: int | None = None,
    ) -> Any:
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: expected an integer, got {value!r}") from None
        self._check_range(name, number, min_value, max_value)
        return number

    def float(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> Any:
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: expected a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ImproperlyConfigured(f"{name}: expected a finite number, got {value!r}")
        self._check_range(name, number, min_value, max_value)
        return number

    @staticmethod
    def _check_range(
        name: str, number: float, min_value: float | None, max_value: float | None
    ) -> None:
        if min_value is not None and number < min_value:
            raise ImproperlyConfigured(f"{name}: must be at least {min_value}, got {number}")
        if max_value is not None and number > max_value:
            raise ImproperlyConfigured(f"{name}: must be at most {max_value}, got {number}")

    def list(self, name: str, default: Any = _MISSING) -> Any:
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, choices: Iterable[str], default: Any = _MISSING) -> Any:
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        allowed = list(choices)
        if value not in allowed:
            raise ImproperlyConfigured(
                f"{name}: expected one of {', '.join(allowed)}, got {value!r}"
            )
        return value

    def json_object(self, name: str, default: Any = _MISSING) -> Any:
        """A JSON object (dict), e.g. ``{"master_name": "mymaster"}``."""
        value = self._raw(name)
        if value is None:
            return self._missing(name, default)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ImproperlyConfigured(
                f"{name}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(parsed, dict):
            raise ImproperlyConfigured(
                f"{name}: expected a JSON object, got {type(parsed).__name__}"
            )
        return parsed

    def path(self, name: str, default: Any = _MISSING) -> Any:
        """A filesystem path; a relative one is taken relative to the project folder."""
        value = self._raw(name)
        if value is None:
            value = self._missing(name, default)
            if value is None:
                return None
        if "\x00" in str(value):
            raise ImproperlyConfigured(f"{name}: path contains a NUL byte")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    def device(self, name: str, default: str = "auto") -> str:
        """A torch device name: auto, cpu, mps, cuda or cuda:N."""
        value = self.str(name, default)
        if not _DEVICE_RE.match(value):
            raise ImproperlyConfigured(
                f"{name}: expected auto, cpu, mps, cuda or cuda:N, got {value!r}"
            )
        return value

    def database(self, name: str, default: str) -> dict[str, Any]:
        """A Django DATABASES entry from a URL (sqlite:///path or postgres://user@host:port/db)."""
        url = self.str(name, default)
        scheme = urlsplit(url).scheme
        if scheme not in DATABASE_SCHEMES:
            raise ImproperlyConfigured(
                f"{name}: unsupported database scheme {scheme!r} in {_redact(url)!r} "
                f"(use sqlite:///PATH or postgres://USER@HOST:PORT/NAME)"
            )
        try:
            config = environ.Env.db_url_config(url)
        except Exception as exc:  # django-environ raises a variety of errors on malformed URLs
            raise ImproperlyConfigured(f"{name}: cannot parse {_redact(url)!r}: {exc}") from exc
        if config["ENGINE"].endswith("sqlite3"):
            db_path = Path(config["NAME"] or "")
            if not config["NAME"]:
                raise ImproperlyConfigured(
                    f"{name}: sqlite URL needs a file path, e.g. sqlite:///var/fairderm.sqlite3"
                )
            if not db_path.is_absolute():
                config["NAME"] = str((self._base_dir / db_path).resolve())
        elif not config.get("NAME"):
            raise ImproperlyConfigured(f"{name}: the URL names no database: {_redact(url)!r}")
        return config

    def broker(self, name: str, default: str) -> str:
        url = self.str(name, default)
        scheme = urlsplit(url).scheme
        if scheme not in BROKER_SCHEMES:
            raise ImproperlyConfigured(
                f"{name}: unsupported broker scheme {scheme!r} (use redis://HOST:PORT/DB or filesystem://)"
            )
        return url


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
