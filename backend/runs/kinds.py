"""The registry of run kinds: each kind's config dataclass, executor and resource class.

A config type is a dataclass from the pure libraries with ``from_dict`` (raising
``ValueError`` naming the field) and ``to_dict``. Executors live in
``backend/runs/executors/`` and are imported only when a run executes, so the web process
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ValidationError

from backend.runs.config_json import config_problem, qualify

if TYPE_CHECKING:
    from backend.datasets.models import Dataset, TrainingSet
    from backend.runs.execution import RunContext
    from backend.runs.models import Run


class RunConfig(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


Executor = Callable[["RunContext", Any], dict[str, Any]]
InputCheck = Callable[[list["Dataset"], list["Run"], list["TrainingSet"]], None]


def _no_input_check(
    datasets: list[Dataset], parents: list[Run], training_sets: list[TrainingSet]
) -> None:
    return None


@dataclass(frozen=True)
class RunKind:
    kind: str
    config_type: Any
    executor_path: str
    uses_gpu: bool
    description: str
    presets: Mapping[str, Callable[[], RunConfig]] = field(default_factory=dict)
    check_inputs: InputCheck = _no_input_check

    def parse_config(self, data: Mapping[str, Any]) -> RunConfig:
        """Validate ``data`` against the kind's config dataclass (ValidationError on bad input).

        The JSON shape is checked first (``config_json``), so a wrong type is reported by the
        field's path rather than as the ``TypeError`` it would raise inside the dataclass.
        """
        problem = config_problem(self.config_type, data)
        if problem is not None:
            raise ValidationError({"config": problem})
        try:
            return self.config_type.from_dict(dict(data))
        except (ValueError, TypeError) as exc:
            raise ValidationError({"config": qualify(self.config_type, str(exc))}) from exc

    def preset(self, name: str) -> RunConfig:
        try:
            return self.presets[name]()
        except KeyError:
            raise ValidationError(
                {
                    "preset": f"unknown preset {name!r} for {self.kind} (known: {', '.join(self.presets)})"
                }
            ) from None

    def executor(self) -> Executor:
        module_name, _, attribute = self.executor_path.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)


_REGISTRY: dict[str, RunKind] = {}


def register(kind: RunKind) -> RunKind:
    _REGISTRY[kind.kind] = kind
    return kind


def get_kind(kind: str) -> RunKind:
    from backend.runs.models import Run

    _load_builtin_kinds()
    if kind not in Run.Kind.values:
        raise ValidationError(
            {"kind": f"unknown run kind {kind!r} (known: {', '.join(Run.Kind.values)})"}
        )
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValidationError({"kind": f"runs of kind {kind!r} are not available yet"}) from None


def available_kinds() -> list[RunKind]:
    _load_builtin_kinds()
    return list(_REGISTRY.values())


def _load_builtin_kinds() -> None:
    importlib.import_module("backend.runs.builtin_kinds")
