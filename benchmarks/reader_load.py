"""Load of a reader study: many dermatologists answering at once, with autosave.

Each simulated reader logs in through the login form, then for every case: opens the case
page, loads the image and autosaves a complete answer (every tenth answer twice, as a double
click would). Pass criteria (../shared/notes/reliability-test-plan.md section 5): no error,
exactly readers x cases answers stored (double submits are idempotent), answer POST p95 under
300 ms and p99 under 1 s, image GET p95 under 500 ms.

    .venv/bin/python benchmarks/reader_load.py                  # 50 readers x 100 answers
    .venv/bin/python benchmarks/reader_load.py --readers 10 --cases 20 --with-run

The script builds its own study in the database the settings name (DATABASE_URL; use a
scratch database), serves the site with gunicorn on a free port, and writes a JSON record to
benchmarks/results/. ``run_load`` is also the driver of the short form in the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
IMAGE_URL = re.compile(r'<img id="case-image" src="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class ReaderLogin:
    username: str
    password: str
    assignment: int
    cases: int


@dataclass
class LoadResult:
    answer_ms: list[float] = field(default_factory=list)
    image_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def percentile(self, values: list[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    def summary(self) -> dict[str, Any]:
        return {
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "answer_posts": self.posts,
            "answer_post_ms": {
                "p50": self.percentile(self.answer_ms, 0.5),
                "p95": self.percentile(self.answer_ms, 0.95),
                "p99": self.percentile(self.answer_ms, 0.99),
            },
            "image_get_ms": {
                "p50": self.percentile(self.image_ms, 0.5),
                "p95": self.percentile(self.image_ms, 0.95),
            },
            "case_page_ms": {"p95": self.percentile(self.page_ms, 0.95)},
        }


def _reader(
    base: str,
    login: ReaderLogin,
    result: LoadResult,
    double_every: int,
    think: float,
    answer: dict[str, str],
) -> None:
    session = requests.Session()

    def fail(what: str) -> None:
        with result.lock:
            result.errors.append(f"{login.username}: {what}")

    try:
        page = session.get(f"{base}/accounts/login/", timeout=30)
        token = CSRF_INPUT.search(page.text)
        response = session.post(
            f"{base}/accounts/login/",
            data={
                "username": login.username,
                "password": login.password,
                "csrfmiddlewaretoken": token.group(1) if token else "",
            },
            headers={"Referer": f"{base}/accounts/login/"},
            timeout=30,
            allow_redirects=False,
        )
        if response.status_code != 302:
            fail(f"login answered {response.status_code}")
            return
        for position in range(1, login.cases + 1):
            url = f"{base}/reviews/reading/{login.assignment}/case/{position}/"
            started = time.perf_counter()
            page = session.get(url, timeout=30)
            page_ms = (time.perf_counter() - started) * 1000
            image = IMAGE_URL.search(page.text)
            if page.status_code != 200 or image is None:
                fail(f"case {position}: page {page.status_code}")
                continue
            started = time.perf_counter()
            picture = session.get(base + image.group(1), timeout=30)
            image_ms = (time.perf_counter() - started) * 1000
            if picture.status_code != 200 or not picture.content:
                fail(f"case {position}: image {picture.status_code}")
            headers = {
                "X-Requested-With": "fetch",
                "X-CSRFToken": session.cookies.get("csrftoken", ""),
                "Referer": url,
            }
            repeats = 2 if double_every and position % double_every == 0 else 1
            for _ in range(repeats):
                started = time.perf_counter()
                saved = session.post(url, data=answer, headers=headers, timeout=30)
                answer_ms = (time.perf_counter() - started) * 1000
                ok = saved.status_code == 200 and saved.json().get("saved") is True
                with result.lock:
                    result.posts += 1
                    result.answer_ms.append(answer_ms)
                if not ok:
                    fail(f"case {position}: answer {saved.status_code} {saved.text[:100]}")
            with result.lock:
                result.page_ms.append(page_ms)
                result.image_ms.append(image_ms)
            if think:
                time.sleep(think)  # the reader looks at the case before the next one
    except Exception as exc:  # a reader that crashes is an error of the run, not of the script
        fail(f"{type(exc).__name__}: {exc}")


def run_load(
    base: str,
    logins: list[ReaderLogin],
    double_every: int = 10,
    spawn_rate: float = 0.0,
    think: float = 0.0,
) -> LoadResult:
    """Run every reader in its own thread against ``base``; return latencies and errors.

    ``spawn_rate`` readers start per second (as Locust's ``-r``; 0 starts all at once);
    ``think`` seconds pass between a reader's cases (0: as fast as the server answers).
    """
    from tests.reviews.factories import complete_answer

    result = LoadResult()
    answer = complete_answer()
    threads = [
        threading.Thread(
            target=_reader, args=(base, login, result, double_every, think, answer), daemon=True
        )
        for login in logins
    ]
    for thread in threads:
        thread.start()
        if spawn_rate:
            time.sleep(1.0 / spawn_rate)
    for thread in threads:
        thread.join()
    return result


def _prepare(readers: int, per_class: int) -> tuple[list[ReaderLogin], Any]:
    """A study of ``per_class`` + ``per_class`` cases with ``readers`` invited readers."""
    from backend.reviews.models import Assignment
    from tests.accounts.factories import PASSWORD, UserFactory
    from tests.reviews.factories import make_study

    stamp = dt.datetime.now().strftime("%H%M%S")
    users = [
        UserFactory(username=f"load-{stamp}-{i:03d}", role="Dermatologists") for i in range(readers)
    ]
    study = make_study(users, n=per_class, name=f"load test {stamp}")
    logins = [
        ReaderLogin(
            user.username,
            PASSWORD,
            Assignment.objects.get(study=study, reader=user).pk,
            2 * per_class,
        )
        for user in users
    ]
    return logins, study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--cases", type=int, default=100, help="cases per study (half synthetic)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--with-run", action="store_true", help="train a model meanwhile")
    parser.add_argument("--spawn-rate", type=float, default=10.0, help="readers started per second")
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds a reader spends on a case (real: 10-30)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logins, study = _prepare(args.readers, args.cases // 2)
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "backend.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            "4",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
    )
    worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer /healthz in 120 s")
            time.sleep(0.5)
        if args.with_run:
            worker = _start_training(env)
        started = time.perf_counter()
        result = run_load(base, logins, spawn_rate=args.spawn_rate, think=args.think)
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
        if worker is not None:
            # The training is only background load: stop the worker and its pool at once.
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=60)
    from backend.reviews.models import Answer

    stored = Answer.objects.filter(assignment__study=study).count()
    summary = result.summary()
    record = {
        "benchmark": "reader_load",
        "date": dt.date.today().isoformat(),
        "machine": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {
            "readers": args.readers,
            "cases": args.cases,
            "gunicorn_workers": args.workers,
            "training_meanwhile": args.with_run,
            "spawn_rate": args.spawn_rate,
            "think_seconds": args.think,
            "database": django.conf.settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        },
        "seconds": round(seconds, 1),
        "answers_stored": stored,
        "answers_expected": args.readers * args.cases,
        **summary,
    }
    record["pass"] = (
        summary["errors"] == 0
        and stored == args.readers * args.cases
        and (summary["answer_post_ms"]["p95"] or 0) < 300
        and (summary["answer_post_ms"]["p99"] or 0) < 1000
        and (summary["image_get_ms"]["p95"] or 0) < 500
    )
    print(json.dumps(record, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / (
        f"reader_load-{record['date']}-{args.readers}x{args.cases}-think{args.think:g}"
        f"{'-with-run' if args.with_run else ''}.json"
    )
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target}")


def _start_training(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A worker and a long CPU training, so the readers share the machine with a run."""
    from backend.runs.services import launch_run
    from tests.datasets.factories import dataset_with_cells
    from tests.runs.factories import TINY_TRAINING

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "gpu,cpu",
            "--concurrency",
            "1",
        ],
        cwd=ROOT,
        env={**env, "COMPUTE_DEVICE": "cpu"},
        start_new_session=True,
    )
    launch_run(
        kind="train-conditional",
        config={**TINY_TRAINING, "train_steps": 100_000, "checkpoint_every": 1000},
        datasets=[dataset_with_cells()],
    )
    return worker


if __name__ == "__main__":
    main()
