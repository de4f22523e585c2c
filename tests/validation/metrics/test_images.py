"""Hashing an evaluated set's files on threads: the same keys, in order, as one by one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from validation.metrics.images import ImageItem, with_sha256s


def _items(folder: Path, count: int) -> list[ImageItem]:
    items = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        path.write_bytes(bytes([index % 251]) * (1000 + 97 * index))  # distinct contents
        items.append(ImageItem(path, fst=1 + index % 6, diagnosis="mel", key=path.name))
    return items


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_every_item_gets_its_own_files_hash_in_order(tmp_path: Path, threads: int) -> None:
    items = _items(tmp_path, 40)
    hashed = with_sha256s(items, threads=threads)
    assert [i.key for i in hashed] == [i.key for i in items]
    assert [i.fst for i in hashed] == [i.fst for i in items]
    assert [i.sha256 for i in hashed] == [
        hashlib.sha256(i.path.read_bytes()).hexdigest() for i in items
    ]


def test_a_hash_already_given_is_kept_not_recomputed(tmp_path: Path) -> None:
    items = _items(tmp_path, 5)
    items[2] = ImageItem(items[2].path, 3, "mel", "given-by-the-dataset", items[2].key)
    hashed = with_sha256s(items, threads=4)
    assert hashed[2].sha256 == "given-by-the-dataset"
    assert hashed[0].sha256 == hashlib.sha256(items[0].path.read_bytes()).hexdigest()


def test_a_missing_file_fails_naming_it(tmp_path: Path) -> None:
    items = _items(tmp_path, 6)
    items[4].path.unlink()
    with pytest.raises(FileNotFoundError, match="004.png"):
        with_sha256s(items, threads=4)


def test_threads_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        with_sha256s(_items(tmp_path, 2), threads=0)
