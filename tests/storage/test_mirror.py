"""The storage layer: a no-op on local disk, and a faithful copy between a cache and a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from backend import storage
from backend.storage import Mirror, StorageIntegrityError
from tests.test_settings import _manage
from validation.files import TEMP_SUFFIX, sha256_bytes


class RecordingStorage(FileSystemStorage):
    """A FileSystemStorage standing for a store on another machine; it records the save order."""

    def __init__(self, **kwargs: Any):
        super().__init__(allow_overwrite=True, **kwargs)
        self.saved: list[str] = []

    def _save(self, name: str, content: Any) -> str:
        self.saved.append(name)
        return super()._save(name, content)


@pytest.fixture
def store(tmp_path: Path) -> RecordingStorage:
    return RecordingStorage(location=str(tmp_path / "store"))


def machine(settings: Any, tmp_path: Path, name: str) -> Path:
    """Point MEDIA_ROOT at this "machine"'s own cache folder."""
    settings.MEDIA_ROOT = tmp_path / name / "media"
    return settings.MEDIA_ROOT


def test_the_default_local_storage_is_the_local_root_and_copies_nothing(
    settings: Any, tmp_path: Path
) -> None:
    root = machine(settings, tmp_path, "one")
    mirror = storage.media()
    assert isinstance(mirror.storage, storage.LocalRootStorage)
    assert not mirror.remote
    target = root / "images" / "ab" / "x.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"pixels")
    assert mirror.publish(target) == "images/ab/x.png"
    assert mirror.fetch("images/ab/x.png") == target
    assert mirror.exists("images/ab/x.png") and not mirror.exists("images/ab/y.png")
    assert list(mirror.walk("images")) == ["images/ab/x.png"]
    # The storage follows the setting (tests and commands move MEDIA_ROOT).
    assert Path(mirror.storage.path("images/ab/x.png")) == target
    assert not storage.artifacts().remote and not storage.uploads().remote


def test_a_file_published_on_one_machine_is_fetched_on_another(
    settings: Any, tmp_path: Path, store: RecordingStorage
) -> None:
    mirror = Mirror("media", "MEDIA_ROOT", storage_override=store)
    first = machine(settings, tmp_path, "first")
    assert mirror.remote
    source = first / "generated" / "run-1" / "000001.png"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"generated pixels")
    assert mirror.publish(source) == "generated/run-1/000001.png"
    assert store.exists("generated/run-1/000001.png")

    second = machine(settings, tmp_path, "second")
    assert not (second / "generated").exists()
    fetched = mirror.fetch("generated/run-1/000001.png", sha256=sha256_bytes(b"generated pixels"))
    assert fetched == second / "generated" / "run-1" / "000001.png"
    assert fetched.read_bytes() == b"generated pixels"
    # A second fetch uses the cache: a changed store copy is not read again without a hash.
    Path(store.path("generated/run-1/000001.png")).write_bytes(b"changed")
    assert mirror.fetch("generated/run-1/000001.png").read_bytes() == b"generated pixels"
    # With the recorded hash, a stale cached copy is replaced.
    fresh = mirror.fetch("generated/run-1/000001.png", sha256=sha256_bytes(b"changed"))
    assert fresh.read_bytes() == b"changed"


def test_a_download_that_does_not_match_its_hash_is_refused_and_not_cached(
    settings: Any, tmp_path: Path, store: RecordingStorage
) -> None:
    mirror = Mirror("media", "MEDIA_ROOT", storage_override=store)
    store.save("images/aa/a.png", _content(b"tampered"))
    root = machine(settings, tmp_path, "worker")
    with pytest.raises(StorageIntegrityError, match="images/aa/a.png has sha256"):
        mirror.fetch("images/aa/a.png", sha256=sha256_bytes(b"original"))
    folder = root / "images" / "aa"
    assert not (folder / "a.png").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_a_missing_file_is_named_in_the_error(
    settings: Any, tmp_path: Path, store: RecordingStorage
) -> None:
    mirror = Mirror("media", "MEDIA_ROOT", storage_override=store)
    machine(settings, tmp_path, "worker")
    with pytest.raises(FileNotFoundError, match="media storage has no file 'images/no/such.png'"):
        mirror.fetch("images/no/such.png")
    assert mirror.fetch_if_stored("images/no/such.png") is None


def test_a_folder_is_published_with_its_completion_marker_last_and_fetched_whole(
    settings: Any, tmp_path: Path, store: RecordingStorage
) -> None:
    mirror = Mirror("media", "MEDIA_ROOT", storage_override=store)
    first = machine(settings, tmp_path, "first")
    folder = first / "runs" / "1-abc" / "checkpoints" / "step-0000020"
    (folder / "sub").mkdir(parents=True)
    for name in ("COMPLETE.json", "unet.safetensors", "optimizer.pt", "sub/zz.bin"):
        (folder / name).write_bytes(name.encode())
    mirror.publish_tree(folder, last="COMPLETE.json")
    assert store.saved[-1].endswith("step-0000020/COMPLETE.json")
    assert len(store.saved) == 4

    second = machine(settings, tmp_path, "second")
    assert mirror.folders("runs/1-abc/checkpoints") == ["runs/1-abc/checkpoints/step-0000020"]
    local = mirror.fetch_tree("runs/1-abc/checkpoints/step-0000020")
    assert local == second / "runs" / "1-abc" / "checkpoints" / "step-0000020"
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
        "COMPLETE.json",
        "optimizer.pt",
        "sub/zz.bin",
        "unet.safetensors",
    ]
    mirror.delete_tree("runs/1-abc/checkpoints/step-0000020")
    assert list(mirror.walk("runs/1-abc")) == []


def test_names_stay_inside_the_root(settings: Any, tmp_path: Path, store: RecordingStorage) -> None:
    mirror = Mirror("media", "MEDIA_ROOT", storage_override=store)
    machine(settings, tmp_path, "one")
    with pytest.raises(ValueError, match="name: '../etc/passwd' is not a relative path"):
        mirror.fetch("../etc/passwd")
    with pytest.raises(ValueError, match="is not under MEDIA_ROOT"):
        mirror.publish(tmp_path / "elsewhere.png")


def test_s3_storage_needs_a_bucket(tmp_path: Path) -> None:
    result = _manage(
        ["check"], {"DEBUG": "1", "FAIRDERM_VAR_DIR": str(tmp_path), "FAIRDERM_STORAGE": "s3"}
    )
    assert result.returncode != 0
    assert "FAIRDERM_S3_BUCKET: required environment variable is not set" in result.stderr
    result = _manage(
        ["check"], {"DEBUG": "1", "FAIRDERM_VAR_DIR": str(tmp_path), "FAIRDERM_STORAGE": "nfs"}
    )
    assert result.returncode != 0
    assert "FAIRDERM_STORAGE" in result.stderr


def _content(data: bytes) -> Any:
    from django.core.files.base import ContentFile

    return ContentFile(data)
