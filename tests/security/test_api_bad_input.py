"""Bad input to the API (issue #12, point 5): never a 5xx, always a 4xx that names the field.

Part 1 walks every operation of the OpenAPI schema the site serves (``/api/schema/``), logged
in as an ML engineer (the role that may write), with requests schemathesis derives from that
schema: its coverage phase (each parameter and body property missing, of the wrong type, out
of range, ...) and hypothesis fuzzing of valid and invalid requests, derandomized. Each
answer must be below 500; each 4xx a JSON object whose keys are fields of the request (or
``non_field_errors`` / ``detail``) with non-empty messages; after each 4xx no row was added
or removed, no task sent and no on-commit hook left pending, and no file written.

Part 2 is a table of bad run launches that reads like the spec: wrong types, huge numbers,
negative counts, unknown skin types, shares and ratios out of range, NaN and Infinity,
unknown keys, presets and kinds, inputs that do not exist or are of the wrong kind. Each is a
400 whose message names the field and leaves no run behind.

Part 3 holds one regression test per bug the walk, the table and probes found (see the "Bad
input" section of docs/reliability.md). tests/security/test_form_bad_input.py puts wrong
values through every field of every run kind's launch form.

schemathesis is used in-process as a case generator: its pytest integration does not run
under pytest 9 (it reads ``request.node._nodeid``, which pytest 9 removed), and its WSGI
transport would bypass pytest-django's test transaction, so each generated case is turned
into a ``requests`` request and replayed through Django's test client.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from django.apps import apps
from django.test import Client
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from backend.dashboard.models import Project
from backend.datasets.models import Dataset, TrainingSet
from backend.runs.models import Artifact, Run
from tests.datasets.factories import DatasetFactory, dataset_with_cells
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db

#: Hypothesis examples per generation mode (valid-looking, invalid) and operation, on top of
#: every case of schemathesis's coverage phase: more where there is a body to get wrong. The
#: walk takes about 25 s on 2 cores (35 s on PostgreSQL).
FUZZ_EXAMPLES = {"with a body": 50, "without": 15}


def _schema_operations() -> list[str]:
    """``"METHOD /path"`` of every operation in the schema, read when the module is collected."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    )


OPERATIONS = _schema_operations()


# --- The world the requests meet ---------------------------------------------------------------


@dataclass
class World:
    real: Dataset
    locked: Dataset
    importing: Dataset
    model_run: Run
    queued_run: Run
    training_set: TrainingSet
    project: Project


@pytest.fixture
def file_roots_of_this_test(settings: Any, tmp_path: Path) -> list[Path]:
    """Media, artifacts and upload staging of this test alone (checked for stray files)."""
    roots = [tmp_path / "media", tmp_path / "artifacts", tmp_path / "uploads"]
    settings.MEDIA_ROOT, settings.ARTIFACTS_ROOT, settings.UPLOAD_DIR = roots
    return roots


@pytest.fixture
def world(ml_engineer: Any, file_roots_of_this_test: list[Path]) -> World:
    """One object of each kind, so that generated ids and path parameters can hit real rows."""
    from tests.dashboard.factories import ProjectFactory

    real = dataset_with_cells(fsts=(1, 6), diagnoses=("nevus", "melanoma"), name="real")
    locked = DatasetFactory(name="ddi-locked", role=Dataset.Role.EXTERNAL_TEST)
    importing = DatasetFactory(name="still-importing", status=Dataset.Status.IMPORTING)
    model_run = RunFactory(kind=Run.Kind.TRAIN_CONDITIONAL, status=Run.Status.SUCCEEDED)
    Artifact.objects.create(
        run=model_run, name="model", kind=Artifact.Kind.MODEL, path="model", sha256="0" * 64
    )
    queued_run = RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.QUEUED)
    training_set = TrainingSet.objects.create(name="all real", fsts=[1, 6])
    training_set.datasets.add(real)
    project = ProjectFactory(name="go-no-go", synthetic_dataset=real)
    return World(real, locked, importing, model_run, queued_run, training_set, project)


@dataclass
class Recorder:
    """Everything a request may leave behind: tasks sent and files written."""

    tasks: list[str]
    roots: list[Path]

    def files(self) -> set[Path]:
        return {path for root in self.roots if root.exists() for path in root.rglob("*")}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, file_roots_of_this_test: list[Path]) -> Recorder:
    """Tasks are recorded instead of sent (every task goes through ``app.send_task``)."""
    from worker.celery import app

    sent: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, *args, **kwargs: sent.append(name))
    return Recorder(sent, file_roots_of_this_test)


@pytest.fixture
def api(ml_engineer: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(ml_engineer)
    return client


def _counting_query() -> tuple[list[str], str]:
    """One SELECT counting the rows of every FairDerm table (many-to-many tables included)."""
    from django.db import connection

    labels, counts = [], []
    for model in apps.get_models(include_auto_created=True):
        if model.__module__.startswith("backend."):
            labels.append(model._meta.label)
            table = connection.ops.quote_name(model._meta.db_table)
            counts.append(f"(SELECT COUNT(*) FROM {table})")
    return labels, "SELECT " + ", ".join(counts)


def snapshot() -> dict[str, int]:
    """Rows per model of every FairDerm app, in one query (the walk takes one per request)."""
    from django.db import connection

    labels, query = _counting_query()
    with connection.cursor() as cursor:
        cursor.execute(query)
        return dict(zip(labels, cursor.fetchone(), strict=True))


# --- What every 4xx must look like ----------------------------------------------------------------


def messages(value: Any) -> Iterator[str]:
    """Every message in a DRF error body (lists, nested objects for nested fields)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from messages(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from messages(item)
    else:
        raise AssertionError(f"an error message is not text: {value!r}")


def root_field(key: str) -> str:
    """The field an error key is about: ``config`` of ``config.share``, ``a.b`` of ``["a.b"][0]``."""
    if key.startswith('["'):
        return str(json.JSONDecoder().raw_decode(key, 1)[0])
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def assert_clear_error(response: Any, fields: set[str]) -> None:
    """A JSON object keyed by fields of the request (or ``detail``), with non-empty messages.

    ``fields``: the body properties and query parameters of the operation (and the keys the
    request sent). A key may be a path into one of them (``config.share``, ``fsts[0]``,
    ``[""]`` for an empty key), as the JSON parser reports.
    """
    assert response["Content-Type"].startswith("application/json"), (
        response.status_code,
        response["Content-Type"],
        response.content[:300],
    )
    body = response.json()
    assert isinstance(body, dict) and body, body
    for key in body:
        root = root_field(key)
        assert root in fields | {"non_field_errors", "detail"}, (
            f"{response.status_code} keyed by {key!r}, which is not a field of the request "
            f"({sorted(fields)}): {body}"
        )
    if response.status_code != 400:
        assert set(body) == {"detail"}, body
    found = list(messages(body))
    assert found and all(text.strip() for text in found), body


def _properties(raw: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = raw["components"]["schemas"][name]
    return set(schema.get("properties", {}))


def request_fields(raw: dict[str, Any], method: str, path: str) -> set[str]:
    """Body properties (every media type) and parameter names of one operation."""
    operation = raw["paths"][path][method.lower()]
    fields = {p["name"] for p in operation.get("parameters", [])}
    for content in operation.get("requestBody", {}).get("content", {}).values():
        fields |= _properties(raw, content.get("schema", {}))
    return fields


# --- Replaying a schemathesis case through the test client -----------------------------------


def send(client: Client, case: Any) -> Any:
    """Send ``case`` as it would go over the wire, through Django's test client."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    wire = {
        key: kwargs[key]
        for key in ("method", "url", "headers", "params", "data", "json", "files")
        if key in kwargs
    }
    prepared = requests.Request(**wire).prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {
        name: value
        for name, value in prepared.headers.items()
        if name.lower() not in ("content-type", "content-length", "host", "cookie")
    }
    return client.generic(
        prepared.method or case.method,
        prepared.path_url,
        data=body,
        content_type=prepared.headers.get("Content-Type", ""),
        headers=headers,
    )


def describe(case: Any) -> str:
    body = "" if isinstance(case.body, NotSet) else f" body={case.body!r:.400}"
    return f"{case.method} {case.formatted_path} query={case.query!r:.200}{body}"


@dataclass
class Walk:
    """Sends cases of one operation and checks each answer (and what it left behind)."""

    client: Client
    recorder: Recorder
    capture: Callable[..., Any]
    fields: set[str]
    statuses: dict[int, int]

    def check(self, case: Any) -> None:
        before_rows, before_files = snapshot(), self.recorder.files()
        del self.recorder.tasks[:]
        with self.capture(execute=True) as callbacks:
            response = send(self.client, case)
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, f"{status} for {describe(case)}"
        assert status not in (401, 403), f"{status} for an ML engineer: {describe(case)}"
        if case.method.upper() == "GET" or status >= 400:
            after_rows = snapshot()
            changed = {k: (v, after_rows[k]) for k, v in before_rows.items() if after_rows[k] != v}
            assert not changed, f"{status} for {describe(case)} changed rows: {changed}"
        if status >= 400:
            # A key the client made up may be the one named (an unknown key holding a NUL).
            sent = {str(key) for key in case.body} if isinstance(case.body, dict) else set()
            try:
                assert_clear_error(response, self.fields | sent)
            except AssertionError as error:
                raise AssertionError(f"{error}\nfor {describe(case)}") from None
            assert not callbacks, f"{status} left on-commit hooks: {describe(case)}"
            assert self.recorder.tasks == [], f"{status} sent {self.recorder.tasks}"
            assert self.recorder.files() == before_files, f"{status} wrote files: {describe(case)}"


def test_the_walk_covers_every_operation_the_site_serves(api: Client) -> None:
    raw = api.get("/api/schema/", {"format": "json"}).json()
    served = sorted(
        f"{method.upper()} {path}" for path, item in raw["paths"].items() for method in item
    )
    assert served == OPERATIONS
    assert {"POST /api/runs/", "POST /api/datasets/", "POST /api/training-sets/"} <= set(served)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_operation_answers_bad_input_with_a_server_error(
    label: str,
    api: Client,
    world: World,
    recorder: Recorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    raw = api.get("/api/schema/", {"format": "json"}).json()
    schema = schemathesis.openapi.from_dict(raw)
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    walk = Walk(
        api, recorder, django_capture_on_commit_callbacks, request_fields(raw, method, path), {}
    )
    started = time.monotonic()

    # Coverage phase: deterministic boundary and wrong-type cases for every part of the request.
    coverage = list(
        schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        )
    )
    assert coverage, f"schemathesis made no coverage case for {label}"
    for case in coverage:
        walk.check(case)

    # Fuzzing: hypothesis, derandomized; path ids are generated, or an existing row's.
    pinned: dict[str, Any] = {}
    if "{id}" in path:
        model = resolve(path.replace("{id}", "1")).func.cls.serializer_class.Meta.model
        pinned = {"path_parameters": {"id": model.objects.order_by("pk").first().pk}}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies = [operation.as_strategy(generation_mode=mode)]
        if pinned:
            strategies.append(operation.as_strategy(generation_mode=mode, **pinned))
        for strategy in strategies:

            @hypothesis_settings(
                max_examples=FUZZ_EXAMPLES["with a body" if operation.body else "without"],
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def fuzz(case: Any) -> None:
                walk.check(case)

            fuzz()
    elapsed = time.monotonic() - started
    print(f"{label}: {sum(walk.statuses.values())} requests {walk.statuses} in {elapsed:.1f} s")
    assert any(400 <= status < 500 for status in walk.statuses), walk.statuses


# --- Part 2: bad run launches, as a table ------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """A launch request (a dict, or raw JSON text) that must be a 400 naming ``field``."""

    why: str
    payload: dict[str, Any] | str
    field: str
    says: str


def generate(**config: Any) -> dict[str, Any]:
    return {"kind": "generate", "config": config}


BAD_LAUNCHES = [
    # Wrong types
    Launch("a string for an integer", generate(count="10"), "config.count", "must be an integer"),
    Launch("a fraction for an integer", generate(count=10.5), "config.count", "must be an integer"),
    Launch("a number for a list", generate(fsts=5), "config.fsts", "must be a list of integers"),
    Launch("an object for a list", generate(fsts={"5": 1}), "config.fsts", "must be a list"),
    Launch(
        "a list inside a list",
        generate(diagnoses=[["nevus"]]),
        "config.diagnoses[0]",
        "must be a string",
    ),
    Launch("a number for a string", generate(sampler=5), "config.sampler", "must be a string"),
    Launch(
        "a string for a boolean",
        {"kind": "train-conditional", "config": {"random_flip": "yes"}},
        "config.random_flip",
        "must be true or false",
    ),
    Launch(
        "a list for an object",
        {"kind": "train-conditional", "config": {"balancing": [1, 2]}},
        "config.balancing",
        "must be an object",
    ),
    Launch(
        "a list for the classifier",
        {"kind": "downstream", "config": {"classifier": ["resnet18"]}},
        "config.classifier",
        "must be an object",
    ),
    Launch(
        "a word among the ratios",
        {"kind": "downstream", "config": {"ratios": ["x"]}},
        "config.ratios[0]",
        "must be a number",
    ),
    Launch(
        "a list for the config",
        {"kind": "generate", "config": [["count", 5]]},
        "config",
        "must be a JSON object",
    ),
    Launch(
        "a string for the config",
        {"kind": "generate", "config": "count=5"},
        "config",
        "must be a JSON object",
    ),
    Launch(
        "true for the config",
        {"kind": "generate", "config": True},
        "config",
        "must be a JSON object",
    ),
    Launch("a string for the inputs", {"kind": "generate", "parents": "1"}, "parents", "list"),
    # Huge numbers
    Launch("1e308 images per cell", generate(count=1e308), "config.count", "must be an integer"),
    Launch(
        "2**63 images per cell", generate(count=2**63), "config.count", "between 1 and 10000000"
    ),
    Launch(
        "a seed past 2**63-1",
        generate(seed=2**63),
        "config.seed",
        "between 0 and 9223372036854775807",
    ),
    Launch(
        "2**63 training steps",
        {"kind": "train-conditional", "config": {"train_steps": 2**63}},
        "config.train_steps",
        "not in 1..10000000",
    ),
    Launch(
        "a checkpoint cadence of 10**12",
        {"kind": "train-conditional", "config": {"checkpoint_every": 10**12}},
        "config.checkpoint_every",
        "not in 1..10000000",
    ),
    Launch(
        "a batch of 10**30", generate(batch_size=10**30), "config.batch_size", "between 1 and 4096"
    ),
    Launch(
        "guidance 1e308",
        generate(guidance_scale=1e308),
        "config.guidance_scale",
        "between 0 and 30",
    ),
    Launch(
        "1e400 overflows to Infinity",
        '{"kind": "generate", "config": {"share": 1e400}}',
        "config.share",
        "Infinity is not a number",
    ),
    Launch(
        "a 5000-digit count",
        '{"kind": "generate", "config": {"count": ' + "9" * 5000 + "}}",
        "detail",
        "JSON parse error",
    ),
    # Negative and zero counts and sizes
    Launch("a negative count", generate(count=-1), "config.count", "between 1 and 10000000"),
    Launch("zero images per cell", generate(count=0), "config.count", "between 1 and 10000000"),
    Launch("a zero batch size", generate(batch_size=0), "config.batch_size", "between 1 and 4096"),
    Launch(
        "a negative batch size",
        {"kind": "train-conditional", "config": {"batch_size": -8}},
        "config.batch_size",
        "not in 1..4096",
    ),
    Launch(
        "negative retries", generate(tone_retries=-1), "config.tone_retries", "between 0 and 20"
    ),
    Launch(
        "zero epochs",
        {"kind": "downstream", "config": {"classifier": {"epochs": 0}}},
        "config.classifier.epochs",
        "between 1 and 1000",
    ),
    Launch(
        "a negative dark-skin factor",
        {"kind": "train-conditional", "config": {"balancing": {"dark_fst_factor": -1.0}}},
        "config.balancing.dark_fst_factor",
        "is not > 0.0",
    ),
    # Unknown Fitzpatrick skin types
    Launch("FST 0", generate(fsts=[0, 1]), "config.fsts", "not a Fitzpatrick skin type 1-6"),
    Launch("FST 7", generate(fsts=[7]), "config.fsts", "not a Fitzpatrick skin type 1-6"),
    Launch("FST 'VII' in a list", generate(fsts=["VII"]), "config.fsts[0]", "must be an integer"),
    Launch(
        "FST 'VII' for the list", generate(fsts="VII"), "config.fsts", "must be a list of integers"
    ),
    Launch(
        "FST 7 to share",
        generate(rule="fst_share", share_fsts=[7]),
        "config.share_fsts",
        "not a Fitzpatrick skin type",
    ),
    Launch(
        "FST 0 to start img2img from",
        generate(mode="img2img", source_fsts=[0]),
        "config.source_fsts",
        "not a Fitzpatrick skin type",
    ),
    Launch(
        "FST 7 in the training set",
        {"kind": "train-conditional", "config": {"fsts": [1, 7]}},
        "config.fsts",
        "not in 1..6",
    ),
    Launch(
        "FST 7 among the dark types",
        {"kind": "train-conditional", "config": {"balancing": {"dark_fsts": [7]}}},
        "config.balancing.dark_fsts",
        "not in 1..6",
    ),
    # Ratios and shares out of range, NaN and Infinity
    Launch(
        "a share below 0", generate(rule="fst_share", share=-0.1), "config.share", "between 0 and 1"
    ),
    Launch(
        "a share above 1", generate(rule="fst_share", share=1.5), "config.share", "between 0 and 1"
    ),
    Launch(
        "a share of exactly 1",
        generate(rule="fst_share", share=1.0),
        "config.share",
        "strictly between 0 and 1",
    ),
    Launch(
        "a share of NaN",
        '{"kind": "generate", "config": {"share": NaN}}',
        "config.share",
        "NaN is not a number",
    ),
    Launch(
        "a share of Infinity",
        '{"kind": "generate", "config": {"share": Infinity}}',
        "config.share",
        "Infinity is not a number",
    ),
    Launch(
        "a strength of -Infinity",
        '{"kind": "generate", "config": {"strength": -Infinity}}',
        "config.strength",
        "-Infinity is not a number",
    ),
    Launch("a strength of 1.5", generate(strength=1.5), "config.strength", "between 0.01 and 1"),
    Launch(
        "a negative ratio",
        {"kind": "downstream", "config": {"ratios": [-0.5]}},
        "config.ratios",
        "between 0.01 and 1000",
    ),
    Launch(
        "a main ratio of 1e308",
        {"kind": "downstream", "config": {"main_ratio": 1e308}},
        "config.main_ratio",
        "between 0.01 and 1000",
    ),
    Launch(
        "a sensitivity of 1.5",
        {"kind": "downstream", "config": {"target_sensitivity": 1.5}},
        "config.target_sensitivity",
        "between 0.01 and 0.99",
    ),
    Launch(
        "a collapse ratio of -0.1",
        {"kind": "evaluate", "config": {"collapse_ratio": -0.1}},
        "config.collapse_ratio",
        "between 0 and 1",
    ),
    Launch(
        "a dropout of 1.5",
        {"kind": "train-lora", "config": {"dropout": 1.5}},
        "config.dropout",
        "between 0 and 0.9",
    ),
    # Text the database cannot store
    Launch(
        "a NUL in a name",
        generate(dataset_name="synthetic\u0000"),
        "config.dataset_name",
        "NUL character",
    ),
    Launch(
        "a lone surrogate",
        '{"kind": "generate", "config": {"dataset_name": "\\ud800"}}',
        "config.dataset_name",
        "lone UTF-16 surrogate",
    ),
    Launch("a NUL in a key", generate(**{"co\u0000unt": 1}), "config.co\u0000unt", "NUL character"),
    # Unknown keys, presets and kinds
    Launch("an unknown key", generate(cout=10), "config.cout", "unknown config key"),
    Launch(
        "an unknown nested key",
        {"kind": "train-conditional", "config": {"balancing": {"resampel": True}}},
        "config.balancing.resampel",
        "unknown config key",
    ),
    Launch(
        "an unknown preset",
        {"kind": "generate", "preset": "a-million-per-cell"},
        "preset",
        "unknown preset 'a-million-per-cell'",
    ),
    Launch("an unknown kind", {"kind": "train-everything"}, "kind", "is not a valid choice"),
    Launch("no kind", {"config": {"count": 5}}, "kind", "required"),
    Launch(
        "an unknown metric",
        {"kind": "evaluate", "config": {"metrics": ["fid", "vibes"]}},
        "config.metrics",
        "unknown ['vibes']",
    ),
    Launch("an unknown sampler", generate(sampler="euler"), "config.sampler", "not one of ddim"),
    # Inputs that do not exist, or are the wrong kind
    Launch(
        "a parent that does not exist",
        {"kind": "generate", "parents": [2**40]},
        "parents",
        "does not exist",
    ),
    Launch(
        "a parent id past bigint",
        {"kind": "generate", "parents": [2**63]},
        "parents",
        "does not exist",
    ),
    Launch(
        "a dataset id of -1",
        {"kind": "train-conditional", "datasets": [-1]},
        "datasets",
        "does not exist",
    ),
    Launch(
        "a dataset id that is a word",
        {"kind": "train-conditional", "datasets": ["real"]},
        "datasets",
        "Incorrect type",
    ),
    Launch(
        "a training set that does not exist",
        {"kind": "train-conditional", "training_sets": [2**40]},
        "training_sets",
        "does not exist",
    ),
]


def _world_launches(world: World) -> list[Launch]:
    """Cases that need the world's ids."""
    return [
        Launch("a queued generate run as the model", {"kind": "generate", "parents": [world.queued_run.pk]}, "parents", "exactly one model"),
        Launch("a locked test set to train on", {"kind": "train-conditional", "datasets": [world.locked.pk]}, "datasets", "locked as an external test set"),
        Launch("a dataset still importing", {"kind": "train-conditional", "datasets": [world.importing.pk]}, "datasets", "not ready"),
        Launch("a training run as the synthetic set", {"kind": "evaluate", "datasets": [world.real.pk], "parents": [world.model_run.pk]}, "parents", "give generate runs"),
        Launch("a training set to evaluate", {"kind": "evaluate", "datasets": [world.real.pk], "training_sets": [world.training_set.pk]}, "training_sets", "not training sets"),
    ]  # fmt: skip


def message_for(body: dict[str, Any], field: str) -> str:
    """The message of ``body`` about ``field`` (``config.count``: key ``config`` with a message
    starting ``count``, or key ``config.count`` from the JSON parser)."""
    if field in body:
        return " ".join(messages(body[field]))
    top, _, inner = field.partition(".")
    for text in messages(body.get(top, [])):
        if inner and (text.startswith(f"{inner}:") or text.startswith(f"{inner} ")):
            return text
    raise AssertionError(f"no message about {field!r} in {body}")


def post_launch(api: Client, payload: dict[str, Any] | str) -> Any:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return api.post("/api/runs/", text, content_type="application/json")


@pytest.mark.parametrize("launch", BAD_LAUNCHES, ids=[launch.why for launch in BAD_LAUNCHES])
def test_a_bad_launch_is_a_400_naming_the_field(
    launch: Launch, api: Client, world: World, recorder: Recorder
) -> None:
    runs = Run.objects.count()
    response = post_launch(api, launch.payload)
    assert response.status_code == 400, (response.status_code, response.content[:500])
    assert launch.says in message_for(response.json(), launch.field), response.json()
    assert Run.objects.count() == runs and recorder.tasks == []


def test_bad_inputs_of_the_wrong_kind_are_400s_naming_the_field(
    api: Client, world: World, recorder: Recorder
) -> None:
    runs = Run.objects.count()
    for launch in _world_launches(world):
        response = post_launch(api, launch.payload)
        assert response.status_code == 400, (launch.why, response.content[:500])
        assert launch.says in message_for(response.json(), launch.field), (
            launch.why,
            response.json(),
        )
    assert Run.objects.count() == runs and recorder.tasks == []


def test_a_good_launch_still_goes_through(
    api: Client, world: World, recorder: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    """The table's refusals are not a refusal of everything: the same request, fixed, runs."""
    payload = {
        "kind": "generate",
        "config": {"rule": "fst_share", "share": 0.25, "fsts": [1, 6], "count": 10},
        "parents": [world.model_run.pk],
        "datasets": [world.real.pk],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post_launch(api, payload)
    assert response.status_code == 201, response.content[:500]
    run = Run.objects.get(pk=response.json()["id"])
    assert run.config["share"] == 0.25 and run.config["fsts"] == [1, 6]
    assert recorder.tasks == ["worker.tasks.execute_run_gpu"]


def test_nan_is_named_where_it_is_in_any_json_body(api: Client, world: World) -> None:
    # Before: {"detail": "JSON parse error - Out of range float values are not JSON compliant"}.
    response = api.post(
        "/api/training-sets/",
        '{"name": "n", "datasets": [], "fsts": [1, NaN]}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"fsts[1]": ["NaN is not a number JSON can hold (give a finite one)"]}
    assert not TrainingSet.objects.filter(name="n").exists()


def test_a_body_nested_too_deeply_is_a_400(api: Client) -> None:
    # Before: RecursionError inside json.load, a 500.
    response = api.post("/api/runs/", "[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


# --- Part 3: one regression test per bug found -----------------------------------------------------


def test_launch_run_refuses_a_config_that_is_not_an_object_or_not_storable() -> None:
    # Before: dict("count=5") raised ValueError inside resolve_config, a 500 from every caller.
    from django.core.exceptions import ValidationError as DjangoValidationError

    from backend.runs.services import launch_run

    for config, says in [
        ("count=5", "must be a JSON object"),
        ([["count", 5]], "must be a JSON object"),
        ({"dataset_name": "a\x00b"}, "dataset_name: contains a NUL character"),
        ({"share": float("nan")}, "share: NaN is not a number"),
        ({"fsts": 5}, "fsts: must be a list of integers, got 5"),
    ]:
        with pytest.raises(DjangoValidationError) as excinfo:
            launch_run(kind="generate", config=config)  # type: ignore[arg-type]
        assert says in excinfo.value.message_dict["config"][0], config
    assert not Run.objects.exists()


def test_generation_config_errors_name_the_field_that_is_wrong() -> None:
    # Before: share_fsts and source_fsts errors said "fsts", a bad seed said "base_seed".
    from generation.plans import GenerationConfig

    for kwargs, name in [
        ({"rule": "fst_share", "share_fsts": (7,)}, "share_fsts"),
        ({"source_fsts": (0,)}, "source_fsts"),
        ({"source_fsts": ()}, "source_fsts"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -1}, "seed"),
    ]:
        with pytest.raises(ValueError, match=rf"^{name}: "):
            GenerationConfig(**kwargs)


def test_the_conditional_model_bounds_its_step_counts_from_above() -> None:
    # Before: train_steps=2**63 was accepted and only failed in the worker.
    from generation.conditional.config import BalancingConfig, ConditionalDiffusionConfig

    for name in ("train_steps", "checkpoint_every", "sample_every", "log_every"):
        with pytest.raises(ValueError, match=rf"^{name}: .* is not in"):
            ConditionalDiffusionConfig(**{name: 10_000_001})
        ConditionalDiffusionConfig(**{name: 10_000_000})
    with pytest.raises(ValueError, match=r"^keep_checkpoints: "):
        ConditionalDiffusionConfig(keep_checkpoints=1001)
    with pytest.raises(ValueError, match=r"^reweight_every: "):
        BalancingConfig(reweight_every=2**63)


def test_a_dataset_import_whose_body_is_not_an_object_is_a_400(
    api: Client, recorder: Recorder
) -> None:
    # Before: "archive" in 0 raised TypeError while choosing the serializer, a 500.
    for body in ("0", "false", "null", "[]", '"archive"'):
        response = api.post("/api/datasets/", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content[:300])
        assert list(response.json()) == ["non_field_errors"]  # "Expected a dictionary ..."
    assert not Dataset.objects.exists() and recorder.tasks == []


@pytest.mark.parametrize(
    ("filters", "field", "says"),
    [
        ({"fsts": 5}, "fsts", "must be a list"),
        ({"fsts": None}, "fsts", "may not be null"),
        ({"fsts": "VI"}, "fsts", "must be a list"),
        ({"fsts": [7]}, "fsts", "integers 1-6"),
        ({"diagnoses": [["nevus"]]}, "diagnoses", "unknown diagnosis codes"),
        ({"diagnoses": {"nevus": 1}}, "diagnoses", "must be a list"),
        ({"origins": 1}, "origins", "must be a list"),
        ({"splits": [None]}, "splits", "splits must be among"),
    ],
    ids=["number", "null", "string", "fst-7", "nested-list", "object", "origins", "splits"],
)
def test_training_set_filters_of_the_wrong_shape_are_400s(
    api: Client, world: World, filters: dict[str, Any], field: str, says: str
) -> None:
    # Before: a number or a nested list raised TypeError in TrainingSet.clean, a 500; a
    # string was read as a list of its characters.
    payload = {"name": "shaped", "datasets": [world.real.pk], **filters}
    response = api.post("/api/training-sets/", payload, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert says in " ".join(response.json()[field])
    assert not TrainingSet.objects.filter(name="shaped").exists()


def test_the_admin_training_set_form_shows_a_wrong_shape_beside_the_field(
    ml_engineer: Any, world: World
) -> None:
    # The same TrainingSet.clean behind the admin: "5" used to be a 500 there too.
    ml_engineer.is_superuser = True
    ml_engineer.save()
    client = Client(raise_request_exception=False)
    client.force_login(ml_engineer)
    response = client.post(
        "/admin/datasets/trainingset/add/",
        {"name": "admin-shaped", "datasets": [world.real.pk], "fsts": "5", "diagnoses": "[]", "origins": "[]", "splits": "[]"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "must be a list (empty for all), got 5" in response.content.decode()
    assert not TrainingSet.objects.filter(name="admin-shaped").exists()


def test_list_filters_refuse_values_they_cannot_mean(api: Client, world: World) -> None:
    # Before: ?dataset=² and a 5000-digit id raised ValueError (a 500), an id past SQLite's
    # integers OverflowError; ?kind with a NUL was a 500 on PostgreSQL.
    for url, query, field in [
        ("/api/images/", {"dataset": "²"}, "dataset"),
        ("/api/images/", {"dataset": "9" * 5000}, "dataset"),
        ("/api/images/", {"dataset": str(2**64)}, "dataset"),
        ("/api/images/", {"dataset": "-1"}, "dataset"),
        ("/api/runs/", {"kind": "train\x00"}, "kind"),
        ("/api/runs/", {"kind": "train-everything"}, "kind"),
        ("/api/runs/", {"status": "done"}, "status"),
    ]:
        response = api.get(url, query)
        assert response.status_code == 400, (query, response.content[:200])
        assert list(response.json()) == [field]
    # The filters still filter.
    images = api.get("/api/images/", {"dataset": world.real.pk}).json()
    assert images["count"] == world.real.images.count() == 4
    assert api.get("/api/images/", {"dataset": world.locked.pk}).json()["count"] == 0
    runs = api.get("/api/runs/", {"kind": "generate", "status": "queued"}).json()
    assert [run["id"] for run in runs["results"]] == [world.queued_run.pk]


def test_server_import_paths_that_cannot_be_looked_up_are_400s(
    api: Client, settings: Any, tmp_path: Path, recorder: Recorder
) -> None:
    # Before: "~user" for an unknown user raised RuntimeError, and a name over 255 bytes
    # inside an import root raised ENAMETOOLONG from is_dir(): both 500s.
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    for images_dir, metadata, field, says in [
        ("~no-such-user-fairderm/set", "m.csv", "images_dir", "unknown home folder"),
        (str(tmp_path / ("a" * 300)), "m.csv", "images_dir", "is not a folder"),
        (str(tmp_path), "b" * 300 + ".csv", "metadata", "is not a file"),
    ]:
        body = {"name": "p", "format": "phantom", "images_dir": images_dir, "metadata": metadata}
        response = api.post("/api/datasets/", body, content_type="application/json")
        assert response.status_code == 400, (images_dir[:40], response.content[:200])
        assert says in response.json()[field][0]
    assert not Dataset.objects.exists() and recorder.tasks == []


def test_api_urls_that_match_nothing_answer_json_404s(api: Client) -> None:
    # Before: /api/runs/0.5/ never reached DRF and got Django's HTML page.
    for url in ("/api/runs/0.5/", "/api/runs/1/cancel/x/", "/api/nothing-here/"):
        response = api.get(url)
        assert response.status_code == 404
        assert list(response.json()) == ["detail"], url
    page = api.get("/runs/not-a-number/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_the_schema_documents_what_the_walk_relies_on(api: Client) -> None:
    raw = api.get("/api/schema/", {"format": "json"}).json()
    assert "requestBody" not in raw["paths"]["/api/runs/{id}/cancel/"]["post"]
    params = {p["name"]: p for p in raw["paths"]["/api/runs/"]["get"]["parameters"]}
    assert set(params["kind"]["schema"]["enum"]) == set(Run.Kind.values)
    names = [p["name"] for p in raw["paths"]["/api/images/"]["get"]["parameters"]]
    assert "dataset" in names
    training_set = raw["components"]["schemas"]["TrainingSet"]["properties"]
    assert training_set["fsts"]["items"] == {"type": "integer", "minimum": 1, "maximum": 6}
    assert raw["components"]["schemas"]["Run"]["properties"]["config"]["type"] == "object"
