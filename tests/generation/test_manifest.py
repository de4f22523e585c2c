"""The folder record of image hashes: SHA256SUMS plus its append-only journal."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from generation.generate import generate_images
from generation.manifest import (
    JOURNAL_NAME,
    MANIFEST_NAME,
    append_to_manifest,
    compact_manifest,
    read_manifest,
)
from generation.plans import balanced_plan
from tests.generation.test_plans_generate import FakeSampler


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def line(name: str) -> str:
    return f"{digest(name)}  {name}\n"


def test_appends_go_to_the_journal_and_leave_sha256sums_untouched(tmp_path: Path) -> None:
    compact_manifest(tmp_path, add={"a.png": digest("a.png")})
    before = (tmp_path / MANIFEST_NAME).stat()
    append_to_manifest(tmp_path, {"c.png": digest("c.png"), "b.png": digest("b.png")})
    append_to_manifest(tmp_path, {"d.png": digest("d.png")})
    append_to_manifest(tmp_path, {})  # nothing to record: nothing written
    after = (tmp_path / MANIFEST_NAME).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (tmp_path / JOURNAL_NAME).read_text() == line("b.png") + line("c.png") + line("d.png")
    assert read_manifest(tmp_path) == {n: digest(n) for n in ("a.png", "b.png", "c.png", "d.png")}


def test_compaction_folds_the_journal_in_sorted_and_removes_it(tmp_path: Path) -> None:
    compact_manifest(tmp_path, add={"b.png": digest("b.png"), "z.png": digest("old")})
    append_to_manifest(tmp_path, {"a.png": digest("a.png"), "z.png": digest("z.png")})
    assert read_manifest(tmp_path)["z.png"] == digest("z.png")  # the later line wins
    compact_manifest(tmp_path, remove=["b.png", "not-listed.png"])
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert (tmp_path / MANIFEST_NAME).read_text() == line("a.png") + line("z.png")
    # Nothing to fold in and nothing to change: the file is not written again.
    before = (tmp_path / MANIFEST_NAME).stat().st_mtime_ns
    compact_manifest(tmp_path, add={"a.png": digest("a.png")})
    assert (tmp_path / MANIFEST_NAME).stat().st_mtime_ns == before


def test_a_crash_between_rewrite_and_journal_removal_reads_back_the_same(tmp_path: Path) -> None:
    append_to_manifest(tmp_path, {"a.png": digest("a.png"), "b.png": digest("b.png")})
    journal = (tmp_path / JOURNAL_NAME).read_text()
    compact_manifest(tmp_path)
    (tmp_path / JOURNAL_NAME).write_text(journal)  # as if the process died before the unlink
    assert read_manifest(tmp_path) == {"a.png": digest("a.png"), "b.png": digest("b.png")}
    compact_manifest(tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == line("a.png") + line("b.png")
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_a_removed_name_stays_removed_though_the_journal_listed_it(tmp_path: Path) -> None:
    append_to_manifest(tmp_path, {"a.png": digest("a.png"), "b.png": digest("b.png")})
    compact_manifest(tmp_path, remove=["a.png"])
    assert read_manifest(tmp_path) == {"b.png": digest("b.png")}


@pytest.mark.parametrize("tail", [b"3f2a", b"\0" * 700, b"x" * 5000])
def test_a_torn_last_journal_line_is_skipped_then_cut_off(tmp_path: Path, tail: bytes) -> None:
    append_to_manifest(tmp_path, {"a.png": digest("a.png")})
    with open(tmp_path / JOURNAL_NAME, "ab") as journal:
        journal.write(tail)  # a crash or power loss inside the next append
    assert read_manifest(tmp_path) == {"a.png": digest("a.png")}
    append_to_manifest(tmp_path, {"b.png": digest("b.png")})
    assert (tmp_path / JOURNAL_NAME).read_text() == line("a.png") + line("b.png")
    assert read_manifest(tmp_path) == {"a.png": digest("a.png"), "b.png": digest("b.png")}


def test_a_torn_only_line_is_cut_to_an_empty_journal(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(b"ab" * 3000)
    assert read_manifest(tmp_path) == {}
    append_to_manifest(tmp_path, {"a.png": digest("a.png")})
    assert (tmp_path / JOURNAL_NAME).read_text() == line("a.png")


def test_a_malformed_whole_line_names_the_file_and_line(tmp_path: Path) -> None:
    append_to_manifest(tmp_path, {"a.png": digest("a.png")})
    with open(tmp_path / JOURNAL_NAME, "a") as journal:
        journal.write("not a checksum line\n" + line("b.png"))
    with pytest.raises(ValueError, match=rf"^output_dir: .*{JOURNAL_NAME} line 2 is not"):
        read_manifest(tmp_path)
    # SHA256SUMS is written whole, so its last line counts even without a newline.
    (tmp_path / JOURNAL_NAME).unlink()
    (tmp_path / MANIFEST_NAME).write_text(line("a.png") + "garbage")
    with pytest.raises(ValueError, match=rf"^output_dir: .*{MANIFEST_NAME} line 2 is not"):
        read_manifest(tmp_path)
    # Compaction replaces an unreadable record by what its caller found whole.
    compact_manifest(tmp_path, add={"c.png": digest("c.png")})
    assert read_manifest(tmp_path) == {"c.png": digest("c.png")}


@pytest.mark.parametrize(
    "record",
    [{"sub/a.png": "0" * 64}, {"a.png": "ABC"}, {"a\nb.png": "0" * 64}, {"": "0" * 64}],
)
def test_a_bad_name_or_digest_is_refused_before_anything_is_written(
    tmp_path: Path, record: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="^record: "):
        append_to_manifest(tmp_path, record)
    with pytest.raises(ValueError, match="^record: "):
        compact_manifest(tmp_path, add=record)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_appenders_lose_no_line(tmp_path: Path) -> None:
    """Shards append under the folder's lock (separate descriptors block one another)."""
    names = [[f"{shard}-{i:03d}.png" for i in range(100)] for shard in range(4)]

    def shard(own: list[str]) -> None:
        for name in own:
            append_to_manifest(tmp_path, {name: digest(name)})
        compact_manifest(tmp_path)

    threads = [threading.Thread(target=shard, args=(own,)) for own in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = {name: digest(name) for own in names for name in own}
    assert read_manifest(tmp_path) == everything
    compact_manifest(tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == "".join(line(n) for n in sorted(everything))


def test_a_run_lists_every_batch_as_it_lands_and_ends_with_one_sorted_file(
    tmp_path: Path,
) -> None:
    plan = balanced_plan([1, 6], ["nevus"], per_cell=5, base_seed=3)
    seen: list[dict[str, str]] = []
    images = generate_images(
        FakeSampler(),
        plan,
        tmp_path,
        batch_size=3,
        provenance={},
        on_progress=lambda done, total, new: seen.append(read_manifest(tmp_path)),
    )
    # After every batch the record lists exactly the images made so far.
    assert [len(record) for record in seen] == [0, 3, 6, 9, 10]
    assert (tmp_path / JOURNAL_NAME).exists() is False
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert lines == [f"{image.sha256}  {image.path.name}" for image in images]
