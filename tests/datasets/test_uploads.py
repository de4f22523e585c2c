"""Zip uploads, server-folder imports, and starting imports from the admin and the REST API.

Every refused upload is refused before extraction and leaves nothing behind: no dataset, no
staging folder, nothing written outside staging. Background imports run synchronously here:
the task's ``apply_async`` is replaced by a direct ``run_import`` call, and the on-commit
callbacks are captured and run by hand.
"""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from backend.datasets import uploads
from backend.datasets.importing import run_import
from backend.datasets.models import Dataset
from backend.datasets.services import (
    check_server_paths,
    import_upload_in_background,
    import_upload_now,
)
from backend.datasets.uploads import (
    ARCHIVE_NAME,
    UploadRejected,
    extract_staged,
    stage_upload,
    sweep_stale_uploads,
)
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import png_bytes
from tests.datasets.test_importing import row, stored_files, write_set

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def upload_settings(settings: Any, tmp_path: Path) -> Path:
    """A private staging area and import root per test, with the default limits."""
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_ROOTS = [tmp_path / "server"]
    (tmp_path / "server").mkdir()
    settings.UPLOAD_MAX_BYTES = 50 * 1024 * 1024
    settings.UPLOAD_MAX_FILES = 1000
    settings.UPLOAD_MAX_RATIO = 100
    return settings.UPLOAD_DIR


@pytest.fixture
def sync_imports(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The import task runs ``run_import`` in this process when its on-commit callback runs."""
    from worker import tasks

    sent: list[dict[str, Any]] = []

    def apply_async(*, kwargs: dict[str, Any], **options: Any) -> None:
        sent.append(kwargs)
        run_import(kwargs["dataset_pk"], kwargs["metadata"], kwargs["images_dir"])

    monkeypatch.setattr(tasks.import_dataset, "apply_async", apply_async)
    return sent


def run_on_commit(callbacks: list[Callable[[], Any]]) -> None:
    for callback in callbacks:
        callback()


# --- Building archives --------------------------------------------------------------------------


def phantom_files(count: int = 3, prefix: str = "") -> dict[str, bytes]:
    """The files of a small phantom set (metadata.csv + images/), as a name -> bytes map."""
    rows = [row(i) for i in range(count)]
    header = "image_id,file,lesion_id,patient_id,fst,ita,diagnosis,malignant,n_colours\n"
    lines = [",".join(r[k] for k in header.strip().split(",")) + "\n" for r in rows]
    files = {f"{prefix}metadata.csv": (header + "".join(lines)).encode()}
    for i, r in enumerate(rows):
        files[f"{prefix}{r['file']}"] = png_bytes((30 * i + 20, 120, 90), size=24)
    return files


def make_zip(
    files: dict[str, bytes],
    *,
    symlinks: dict[str, str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
    name: str = "set.zip",
) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        for member, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(member)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def everything_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture
def outside_watch(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Fails the test if anything appears in tmp_path (outside staging) or under staging."""
    before = everything_under(tmp_path)

    def check() -> None:
        added = everything_under(tmp_path) - before
        assert added <= {tmp_path / "uploads"}, sorted(added)
        assert (
            not any((tmp_path / "uploads").iterdir()) if (tmp_path / "uploads").exists() else True
        )

    yield check


def archive_errors(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return excinfo.value.message_dict["archive"]


# --- Staging and importing a zip ----------------------------------------------------------------


def test_a_zip_with_its_csv_is_staged_unextracted_then_imported_and_removed(
    upload_settings: Path,
) -> None:
    staged = stage_upload(make_zip(phantom_files(3)))
    assert staged.folder.parent == upload_settings
    assert sorted(p.name for p in staged.folder.iterdir()) == [  # nothing extracted
        uploads.NAME_FILE,
        ARCHIVE_NAME,
    ]
    assert staged.metadata == staged.folder / "files" / "metadata.csv"
    assert staged.images_dir == staged.folder / "files"
    assert (staged.files, staged.source) == (4, "upload: set.zip (metadata.csv)")
    dataset = Dataset.objects.create(name="zip", format="phantom")
    summary = run_import(dataset.pk, staged.metadata, staged.images_dir)
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 3, [])
    assert not staged.folder.exists()


def test_a_second_delivery_of_the_task_changes_nothing(upload_settings: Path) -> None:
    staged = stage_upload(make_zip(phantom_files(2)))
    dataset = Dataset.objects.create(name="twice", format="phantom")
    assert run_import(dataset.pk, staged.metadata, staged.images_dir).status == "ready"
    again = run_import(dataset.pk, staged.metadata, staged.images_dir)
    assert (again.status, again.imported, again.rejected) == ("ready", 2, [])
    assert Dataset.objects.get(pk=dataset.pk).images.count() == 2


def test_a_zipped_folder_reads_the_csv_paths_from_the_csv_folder() -> None:
    files = phantom_files(2, prefix="phantom-set/")
    files["__MACOSX/phantom-set/._metadata.csv"] = b"\x00\x05\x16\x07"
    files["phantom-set/.DS_Store"] = b"Bud1"
    files["phantom-set/images/._ph-0000.png"] = b"\x00\x05\x16\x07"
    summary = import_upload_now(name="folder", format="phantom", archive=make_zip(files))
    assert (summary.status, summary.imported, summary.rejected, summary.warnings) == (
        "ready",
        2,
        [],
        [],
    )
    assert Dataset.objects.get(name="folder").source == "upload: set.zip (metadata.csv)"


def test_a_zip_of_images_with_a_separate_csv(upload_settings: Path) -> None:
    files = phantom_files(3)
    csv_file = SimpleUploadedFile("my labels.csv", files.pop("metadata.csv"))
    summary = import_upload_now(
        name="separate", format="phantom", archive=make_zip(files), metadata_file=csv_file
    )
    assert (summary.status, summary.imported) == ("ready", 3)
    assert not any(upload_settings.iterdir())


def test_decomposed_member_names_match_composed_csv_paths() -> None:
    """macOS zips carry NFD names ("e" + combining accent); the CSV says "é"."""
    files = phantom_files(1)
    files["metadata.csv"] = files["metadata.csv"].replace(b"ph-0000.png", "ph-é.png".encode())
    files["images/ph-e\u0301.png"] = files.pop("images/ph-0000.png")
    summary = import_upload_now(name="nfd", format="phantom", archive=make_zip(files))
    assert (summary.status, summary.imported) == ("ready", 1), summary.rejected


def test_a_failed_upload_import_leaves_no_staging_and_no_files(upload_settings: Path) -> None:
    files = phantom_files(2)
    files["images/ph-0000.png"] = b"<svg/>"
    files["images/ph-0001.png"] = b""
    before = stored_files()
    summary = import_upload_now(name="broken", format="phantom", archive=make_zip(files))
    assert summary.status == "failed" and len(summary.rejected) == 2
    assert stored_files() == before
    assert not any(upload_settings.iterdir())


# --- Refused before extraction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.txt", "'..' in the path (zip-slip)"),
        ("images/../../evil.txt", "'..' in the path (zip-slip)"),
        ("..\\evil.txt", "'..' in the path (zip-slip)"),
        ("/tmp/evil.txt", "absolute path (zip-slip)"),
        ("C:/evil.txt", "absolute path (zip-slip)"),
    ],
)
def test_zip_slip_members_are_refused_before_extraction(
    member: str, message: str, outside_watch: Callable[[], None]
) -> None:
    files = {**phantom_files(1), member: b"owned"}
    with pytest.raises(ValidationError) as excinfo:
        import_upload_in_background(name="slip", format="phantom", archive=make_zip(files))
    assert archive_errors(excinfo) == [f"set.zip: {member!r}: {message}"]
    assert not Dataset.objects.exists()
    outside_watch()


def test_symlink_members_are_refused(outside_watch: Callable[[], None]) -> None:
    archive = make_zip(phantom_files(1), symlinks={"images/link.png": "/etc/passwd"})
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(archive)
    assert archive_errors(excinfo) == ["set.zip: 'images/link.png': symbolic links are not allowed"]
    outside_watch()


def test_nested_archives_and_encrypted_members_are_refused() -> None:
    inner = make_zip({"a.txt": b"a"}).read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, data in phantom_files(1).items():
            zf.writestr(member, data)
        zf.writestr("more.zip", inner)
        zf.writestr("secret.png", b"x")
    data = bytearray(buffer.getvalue())
    entry = data.rfind(b"PK\x01\x02")  # the central directory entry of secret.png
    assert data[entry + 46 : entry + 56] == b"secret.png"
    data[entry + 8] |= 0x1  # the "encrypted" flag
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(SimpleUploadedFile("set.zip", bytes(data)))
    assert archive_errors(excinfo) == [
        "set.zip: 'more.zip': a nested archive; unpack it and upload its contents",
        "set.zip: 'secret.png': encrypted members are not supported",
    ]


def test_too_many_files_are_refused(settings: Any, outside_watch: Callable[[], None]) -> None:
    settings.UPLOAD_MAX_FILES = 3
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(make_zip(phantom_files(3)))
    assert archive_errors(excinfo) == [
        "set.zip: 4 files, more than the limit of 3 (FAIRDERM_UPLOAD_MAX_FILES)"
    ]
    outside_watch()


def test_a_zip_listing_far_too_many_entries_is_refused_from_its_last_record(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.UPLOAD_MAX_FILES = 10
    archive = make_zip({f"f{i}.png": b"" for i in range(1100)})

    def no_parsing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the central directory must not be parsed")

    monkeypatch.setattr(uploads.zipfile, "ZipFile", no_parsing)
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(archive)
    assert archive_errors(excinfo) == [
        "set.zip: the archive lists 1100 entries, far more than the limit of 10 files "
        "(FAIRDERM_UPLOAD_MAX_FILES)"
    ]


def test_an_archive_over_the_size_quota_is_refused(
    settings: Any, outside_watch: Callable[[], None]
) -> None:
    settings.UPLOAD_MAX_BYTES = 2000
    noisy = {**phantom_files(1), "images/big.png": os.urandom(3000)}
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(make_zip(noisy))
    [message] = archive_errors(excinfo)
    assert message.startswith("set.zip is 3") and "FAIRDERM_UPLOAD_MAX_BYTES" in message
    # The zip is small, its contents are not (below the size where ratios are checked).
    compressible = {**phantom_files(1), "images/big.png": b"a" * 3000}
    archive = make_zip(compressible)
    assert archive.size < 2000
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(archive)
    [message] = archive_errors(excinfo)
    assert message.startswith("set.zip: 3")
    assert message.endswith(
        "bytes once extracted, more than the limit of 2000 (FAIRDERM_UPLOAD_MAX_BYTES)"
    )
    outside_watch()


def zeros_zip(size: int, name: str = "images/zeros.png") -> SimpleUploadedFile:
    """A zip whose one member inflates to ``size`` zero bytes, written in 1 MiB chunks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("metadata.csv", phantom_files(1)["metadata.csv"])
        with zf.open(name, "w") as member:
            chunk = b"\x00" * (1024 * 1024)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    return SimpleUploadedFile("bomb.zip", buffer.getvalue())


def test_a_zip_bomb_is_refused_by_its_ratio_before_extraction(
    outside_watch: Callable[[], None],
) -> None:
    archive = zeros_zip(16 * 1024 * 1024)
    assert archive.size < 100_000
    started = time.perf_counter()
    with pytest.raises(ValidationError) as excinfo:
        import_upload_in_background(name="bomb", format="phantom", archive=archive)
    assert time.perf_counter() - started < 2
    [message] = archive_errors(excinfo)
    assert message.startswith("bomb.zip: 'images/zeros.png': compression ratio ")
    assert "over the limit of 100:1 (FAIRDERM_UPLOAD_MAX_RATIO); a zip bomb?" in message
    assert not Dataset.objects.exists()
    outside_watch()


def test_a_member_that_inflates_past_its_declared_size_stops_the_extraction(
    upload_settings: Path,
) -> None:
    """A lying central directory gets past the first check; the worker's extraction stops it."""
    archive = zeros_zip(2 * 1024 * 1024)
    data = archive.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        real = zf.getinfo("images/zeros.png").file_size
    lied = data.replace(real.to_bytes(4, "little"), (1000).to_bytes(4, "little"))
    staged = stage_upload(SimpleUploadedFile("liar.zip", lied))
    dataset = Dataset.objects.create(name="liar", format="phantom")
    before = stored_files()
    summary = run_import(dataset.pk, staged.metadata, staged.images_dir)
    assert summary.status == "failed"
    [error] = summary.rejected
    assert (error["file"], error["row"]) == ("liar.zip", None)
    # zipfile stops at the declared size and fails the CRC; extract_staged's own count of
    # the bytes written would stop it otherwise.
    assert error["reason"] == "cannot be extracted: Bad CRC-32 for file 'images/zeros.png'"
    assert stored_files() == before
    assert not any(upload_settings.iterdir())


def test_extraction_checks_the_archive_again(upload_settings: Path) -> None:
    """A zip placed in staging by other means is still checked before extraction."""
    folder = upload_settings / "manual"
    folder.mkdir(parents=True)
    (folder / ARCHIVE_NAME).write_bytes(make_zip({"../../escaped.txt": b"x"}).read())
    with pytest.raises(UploadRejected) as excinfo:
        extract_staged(folder)
    assert excinfo.value.problems == ["'../../escaped.txt': '..' in the path (zip-slip)"]
    assert not (upload_settings.parent / "escaped.txt").exists()
    assert not (folder / "files").exists() or not any((folder / "files").iterdir())


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        ({"images/a.png": png_bytes()}, "metadata_file", "set.zip holds no CSV file"),
        (
            {"a.csv": b"x", "b.csv": b"y", "images/a.png": png_bytes()},
            "metadata_file",
            "set.zip holds several CSV files (a.csv, b.csv)",
        ),
        ({}, "archive", "set.zip: the archive holds no files"),
    ],
    ids=["no-csv", "several-csvs", "empty"],
)
def test_the_metadata_csv_must_be_found(
    files: dict[str, bytes], field: str, message: str, upload_settings: Path
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(make_zip(files))
    assert excinfo.value.message_dict[field][0].startswith(message)
    assert not upload_settings.exists() or not any(upload_settings.iterdir())


def test_a_file_that_is_not_a_zip_is_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        stage_upload(SimpleUploadedFile("set.zip", b"not a zip at all"))
    assert archive_errors(excinfo)[0].startswith("set.zip: not a readable zip file")


def test_staging_is_removed_when_the_dataset_cannot_be_created(
    monkeypatch: pytest.MonkeyPatch, upload_settings: Path
) -> None:
    from backend.datasets import services

    def refuse(**kwargs: Any) -> None:
        raise ValidationError({"name": "taken meanwhile"})

    monkeypatch.setattr(services, "import_in_background", refuse)
    with pytest.raises(ValidationError):
        import_upload_in_background(name="x", format="phantom", archive=make_zip(phantom_files(1)))
    assert not any(upload_settings.iterdir())


def test_stale_staging_folders_are_swept_unless_their_import_is_pending(
    upload_settings: Path,
) -> None:
    pending = Dataset.objects.create(name="pending", format="phantom")
    done = Dataset.objects.create(name="done", format="phantom", status="ready")
    folders = {}
    for key in ("orphan", "pending", "done", "young"):
        folders[key] = upload_settings / key
        folders[key].mkdir(parents=True)
    uploads.mark_staging(folders["pending"], pending.pk)
    uploads.mark_staging(folders["done"], done.pk)
    old = time.time() - 2 * uploads.STALE_SECONDS
    for key in ("orphan", "pending", "done"):
        os.utime(folders[key], (old, old))
    removed = sweep_stale_uploads()
    assert sorted(p.name for p in removed) == ["done", "orphan"]
    assert sorted(p.name for p in upload_settings.iterdir()) == ["pending", "young"]


# --- Server folders -----------------------------------------------------------------------------


def test_server_paths_must_lie_inside_the_import_roots(tmp_path: Path, settings: Any) -> None:
    inside = tmp_path / "server" / "set"
    write_set(inside, [row(0)])
    assert check_server_paths(images_dir=str(inside), metadata="metadata.csv") == (
        inside.resolve(),
        (inside / "metadata.csv").resolve(),
    )
    sibling = tmp_path / "server-evil"  # shares the root's prefix, not its folder
    write_set(sibling, [row(0)])
    (tmp_path / "server" / "link").symlink_to(sibling, target_is_directory=True)
    settings.UPLOAD_DIR = tmp_path / "server" / "uploads"
    (tmp_path / "server" / "uploads" / "abc").mkdir(parents=True)
    cases = [
        (str(sibling), "metadata.csv", "images_dir", "is outside the folders imports may read"),
        (str(tmp_path / "server" / "link"), "metadata.csv", "images_dir", "is outside"),
        (str(inside), "/etc/passwd", "metadata", "is outside the folders imports may read"),
        (str(inside), "../../server-evil/metadata.csv", "metadata", "is outside"),
        ("server/set", "metadata.csv", "images_dir", "give an absolute path on the server"),
        (str(tmp_path / "server" / "nope"), "m.csv", "images_dir", "is not a folder"),
        (str(inside), "nope.csv", "metadata", "is not a file"),
        (str(tmp_path / "server" / "uploads" / "abc"), "m.csv", "images_dir", "staging area"),
    ]
    for images_dir, metadata, field, message in cases:
        with pytest.raises(ValidationError) as excinfo:
            check_server_paths(images_dir=images_dir, metadata=metadata)
        assert message in excinfo.value.message_dict[field][0], (images_dir, metadata)


# --- Admin --------------------------------------------------------------------------------------


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


IMPORT_URL = "/admin/datasets/dataset/import/"


def test_the_admin_add_button_leads_to_the_import_page(ml_engineer: Any) -> None:
    client = login(ml_engineer)
    assert client.get("/admin/datasets/dataset/add/")["Location"] == IMPORT_URL
    page = client.get(IMPORT_URL)
    assert page.status_code == 200
    assert b'enctype="multipart/form-data"' in page.content
    choices = dict(page.context["form"].fields["format"].choices)
    assert "phantom" in choices and "generated" not in choices


def test_an_ml_engineer_imports_a_zip_from_the_admin(
    ml_engineer: Any,
    sync_imports: list,
    django_capture_on_commit_callbacks: Any,
    upload_settings: Path,
) -> None:
    client = login(ml_engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            IMPORT_URL,
            {
                "name": "admin-zip",
                "format": "phantom",
                "role": "training",
                "archive": make_zip(phantom_files(3)),
            },
        )
    dataset = Dataset.objects.get(name="admin-zip")
    assert response.status_code == 302 and response["Location"] == dataset.get_absolute_url()
    assert dataset.status == "importing" and dataset.created_by == ml_engineer
    assert sync_imports == []  # nothing is sent before the transaction commits
    run_on_commit(callbacks)
    dataset.refresh_from_db()
    assert (dataset.status, dataset.image_count) == ("ready", 3)
    assert not any(upload_settings.iterdir())
    page = client.get(dataset.get_absolute_url())
    assert "Importing &#x27;admin-zip&#x27; in the background" in page.content.decode()


def test_an_ml_engineer_imports_a_server_folder_from_the_admin(
    ml_engineer: Any, sync_imports: list, django_capture_on_commit_callbacks: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "server" / "set"
    write_set(folder, [row(i) for i in range(2)])
    client = login(ml_engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            IMPORT_URL,
            {
                "name": "admin-folder",
                "format": "phantom",
                "role": "external-test",
                "images_dir": str(folder),
                "metadata": "metadata.csv",
            },
        )
    assert response.status_code == 302
    run_on_commit(callbacks)
    dataset = Dataset.objects.get(name="admin-folder")
    assert (dataset.status, dataset.role, dataset.image_count) == ("ready", "external-test", 2)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, None, "Give a zip file or a server folder to import from."),
        ({"images_dir": "/etc"}, "images_dir", "/etc is outside the folders imports may read"),
        ({"archive": "zip-slip"}, "archive", "set.zip: '../evil.txt': '..' in the path"),
        ({"images_dir": "{set}", "metadata": ""}, "metadata", "Give the metadata CSV's path"),
        ({"archive": "ok", "images_dir": "{set}"}, None, "Give either a zip file or a server"),
    ],
    ids=["no-source", "outside-roots", "zip-slip", "no-metadata", "both"],
)
def test_the_admin_form_names_the_bad_field(
    ml_engineer: Any, tmp_path: Path, data: dict[str, str], field: str | None, message: str
) -> None:
    folder = tmp_path / "server" / "set"
    write_set(folder, [row(0)])
    post: dict[str, Any] = {"name": "bad", "format": "phantom", "role": "training"}
    for key, value in data.items():
        if value == "zip-slip":
            post[key] = make_zip({**phantom_files(1), "../evil.txt": b"x"})
        elif value == "ok":
            post[key] = make_zip(phantom_files(1))
        else:
            post[key] = value.replace("{set}", str(folder))
    post.setdefault("metadata", "metadata.csv" if "images_dir" in data else "")
    response = login(ml_engineer).post(IMPORT_URL, post)
    assert response.status_code == 200
    form = response.context["form"]
    errors = form.non_field_errors() if field is None else form.errors[field]
    assert any(message in str(error) for error in errors), form.errors
    assert not Dataset.objects.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_readers_and_leads_cannot_reach_the_import_page(
    reader_a: Any, lead: Any, ml_engineer: Any
) -> None:
    response = login(reader_a).get(IMPORT_URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = login(reader_a).post(IMPORT_URL, {"name": "x"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    lead.is_staff = True  # staff without the ML engineer role
    lead.save()
    response = login(lead).get(IMPORT_URL)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert not Dataset.objects.exists()


# --- REST API -----------------------------------------------------------------------------------


API_URL = "/api/datasets/"


def test_an_ml_engineer_posts_a_zip_and_gets_202(
    ml_engineer: Any,
    sync_imports: list,
    django_capture_on_commit_callbacks: Any,
    upload_settings: Path,
) -> None:
    client = login(ml_engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            API_URL, {"name": "api-zip", "format": "phantom", "archive": make_zip(phantom_files(2))}
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["name"], body["status"], body["role"]) == ("api-zip", "importing", "training")
    assert response["Location"].endswith(f"/api/datasets/{body['id']}/")
    run_on_commit(callbacks)
    detail = client.get(f"{API_URL}{body['id']}/").json()
    assert (detail["status"], detail["image_count"]) == ("ready", 2)
    assert not any(upload_settings.iterdir())


def test_an_ml_engineer_posts_server_paths_as_json(
    ml_engineer: Any, sync_imports: list, django_capture_on_commit_callbacks: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "server" / "set"
    metadata = write_set(folder, [row(0), row(1)])
    with django_capture_on_commit_callbacks(execute=True):
        response = login(ml_engineer).post(
            API_URL,
            {
                "name": "api-folder",
                "format": "phantom",
                "role": "external-test",
                "images_dir": str(folder),
                "metadata": str(metadata),
            },
            content_type="application/json",
        )
    assert response.status_code == 202, response.content
    assert Dataset.objects.get(name="api-folder").image_count == 2


@pytest.mark.parametrize("persona", ["lead", "reader_a"])
def test_leads_and_readers_get_403(persona: str, request: pytest.FixtureRequest) -> None:
    client = login(request.getfixturevalue(persona))
    response = client.post(
        API_URL, {"name": "x", "format": "phantom", "archive": make_zip(phantom_files(1))}
    )
    assert response.status_code == 403
    assert Client().post(API_URL, {"name": "x"}).status_code == 403
    assert not Dataset.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"format": "phantom", "images_dir": "/x", "metadata": "m.csv"}, "name", "required"),
        ({"name": "n", "format": "nope", "images_dir": "/x", "metadata": "m"}, "format", "valid choice"),
        ({"name": "n", "format": "generated", "images_dir": "/x", "metadata": "m"}, "format", "not available yet"),
        ({"name": "n", "format": "phantom", "role": "test", "images_dir": "/x", "metadata": "m"}, "role", "valid choice"),
        ({"name": "n", "format": "phantom"}, "images_dir", "or upload a zip as 'archive'"),
        ({"name": "n", "format": "phantom", "images_dir": "/etc", "metadata": "passwd"}, "images_dir", "outside the folders"),
    ],
    ids=["name", "format", "format-without-reader", "role", "no-source", "outside-roots"],
)  # fmt: skip
def test_bad_json_requests_get_400_naming_the_field(
    ml_engineer: Any, body: dict[str, str], field: str, message: str
) -> None:
    response = login(ml_engineer).post(API_URL, body, content_type="application/json")
    assert response.status_code == 400
    errors = response.json()
    assert field in errors and message in errors[field][0], errors
    assert not Dataset.objects.exists()


def test_bad_uploads_get_400_naming_the_field(ml_engineer: Any, tmp_path: Path) -> None:
    client = login(ml_engineer)
    slip = make_zip({**phantom_files(1), "../evil.txt": b"x"})
    response = client.post(API_URL, {"name": "n", "format": "phantom", "archive": slip})
    assert response.status_code == 400
    assert response.json() == {"archive": ["set.zip: '../evil.txt': '..' in the path (zip-slip)"]}
    both = {
        "name": "n",
        "format": "phantom",
        "archive": make_zip(phantom_files(1)),
        "images_dir": "/x",
    }
    response = client.post(API_URL, both)
    assert response.status_code == 400 and "not both" in response.json()["images_dir"][0]
    taken = {"name": "taken", "format": "phantom"}
    Dataset.objects.create(**taken)
    response = client.post(API_URL, {**taken, "archive": make_zip(phantom_files(1))})
    assert response.status_code == 400 and "already exists" in response.json()["name"][0]
    assert not (tmp_path / "evil.txt").exists()


def test_too_many_files_in_one_request_get_400(ml_engineer: Any, settings: Any) -> None:
    files = {f"file{i}": SimpleUploadedFile(f"{i}.csv", b"x") for i in range(101)}
    response = login(ml_engineer).post(API_URL, {"name": "n", "format": "phantom", **files})
    assert response.status_code == 400
    assert not Dataset.objects.exists()


def test_the_import_endpoint_is_in_the_openapi_schema(ml_engineer: Any) -> None:
    response = login(ml_engineer).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json() if "json" in response["Content-Type"] else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    post = schema["paths"]["/api/datasets/"]["post"]
    content = post["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["$ref"].endswith("/DatasetUpload")
    assert content["application/json"]["schema"]["$ref"].endswith("/DatasetServerImport")
    assert {"202", "400", "403"} <= set(post["responses"])
    upload = schema["components"]["schemas"]["DatasetUpload"]
    assert upload["properties"]["archive"]["format"] == "binary"
    assert set(upload["required"]) == {"name", "format", "archive"}
