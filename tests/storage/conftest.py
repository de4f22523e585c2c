"""An S3-compatible server for the storage tests: moto's, in its own process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, services_required

ACCESS_KEY = "fairderm-test"
SECRET_KEY = "fairderm-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"fairderm-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``moto.server`` listening on 127.0.0.1 (a real HTTP S3 API, reachable by subprocesses)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the dev requirements install both
        if services_required():
            raise
        pytest.skip(f"moto[server] and boto3 are needed for the S3 tests: {exc}")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    handle = log.open("wb")
    env = {**os.environ, "MOTO_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    handle.close()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"moto server did not start:\n{log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.2)
    yield S3Server(endpoint, process)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def s3_storages(server: S3Server, bucket: str) -> dict[str, Any]:
    """The STORAGES setting of FAIRDERM_STORAGE=s3 for ``bucket`` on ``server``."""
    from django.conf import settings

    options = {
        "bucket_name": bucket,
        "endpoint_url": server.endpoint,
        "region_name": REGION,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "file_overwrite": True,
        "default_acl": None,
    }
    media = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**options, "location": "media"},
    }
    artifacts = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**options, "location": "artifacts"},
    }
    return {**settings.STORAGES, "default": media, "media": media, "artifacts": artifacts}


def s3_env(server: S3Server, bucket: str, cache: Path) -> dict[str, str]:
    """Environment of a "machine" that keeps files in ``bucket`` and caches them under ``cache``."""
    return {
        "FAIRDERM_STORAGE": "s3",
        "FAIRDERM_S3_BUCKET": bucket,
        "FAIRDERM_S3_ENDPOINT_URL": server.endpoint,
        "FAIRDERM_S3_REGION": REGION,
        "FAIRDERM_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "FAIRDERM_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "MEDIA_ROOT": str(cache / "media"),
        "ARTIFACTS_ROOT": str(cache / "artifacts"),
        "FAIRDERM_UPLOAD_DIR": str(cache / "uploads"),
    }


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def on_s3(settings: Any, s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Path:
    """This test process as one machine of an S3 deployment; returns its cache folder."""
    cache = tmp_path / "web-cache"
    settings.STORAGES = s3_storages(s3_server, s3_bucket)
    settings.MEDIA_ROOT = cache / "media"
    settings.ARTIFACTS_ROOT = cache / "artifacts"
    settings.UPLOAD_DIR = cache / "uploads"
    return cache
