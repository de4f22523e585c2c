"""benchmarks/gpu/check_wheels.py: names and version specifiers against the device's packages."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
spec = importlib.util.spec_from_file_location(
    "check_wheels", ROOT / "benchmarks/gpu/check_wheels.py"
)
assert spec and spec.loader
check_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_wheels)


def wheel(folder: Path, name: str, version: str, requires: list[str], table: str = "") -> None:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
        archive.writestr(
            f"{name}-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{meta}",
        )
        if table:
            archive.writestr(f"{name}/dependency_versions_table.py", f"deps = {{{table}}}\n")


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "device.txt"
    path.write_text("# the device\ntorch==2.11.0\nhuggingface-hub==1.33.0\nscipy\nnumpy\n")
    return path


def test_the_device_list_reads_names_and_versions(device: Path) -> None:
    assert check_wheels.device_packages(device) == {
        "torch": "2.11.0", "huggingface-hub": "1.33.0", "scipy": None, "numpy": None,
    }  # fmt: skip


def test_wheels_whose_specifiers_admit_the_device_versions_pass(
    tmp_path: Path, device: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = tmp_path / "whl"
    wheels.mkdir()
    wheel(wheels, "diffusers", "0.42.1", ["huggingface-hub<3.0,>=1.32.0", "numpy", "peft>=0.17"],
          table='"python": "python>=3.11.0", "torch": "torch>=2.6", "flax": "flax>=0.4.1"')  # fmt: skip
    wheel(wheels, "peft", "0.21.2", ["torch>=1.13.0", "scipy>=1.0"])
    assert check_wheels.main(str(wheels), device) == 0
    out = capsys.readouterr().out
    assert "UNVERIFIED: peft needs scipy>=1.0" in out and out.rstrip().endswith("ok")


def test_a_specifier_the_device_version_fails_is_a_problem(
    tmp_path: Path, device: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = tmp_path / "whl"
    wheels.mkdir()
    wheel(wheels, "diffusers", "0.42.1", ["huggingface-hub>=2.0", "peft>=0.30"],
          table='"torch": "torch>=2.12", "python": "python>=3.13"')  # fmt: skip
    wheel(wheels, "peft", "0.21.2", ["torch>=1.13.0"])
    assert check_wheels.main(str(wheels), device) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROBLEM")]
    assert problems == [
        "PROBLEM: diffusers needs huggingface-hub>=2.0, the device has 1.33.0",
        "PROBLEM: diffusers needs peft>=0.30, carried 0.21.2",
        "PROBLEM: diffusers checks torch>=2.12 at run time, the device would have 2.11.0",
        "PROBLEM: diffusers checks python>=3.13 at run time, the device would have 3.12.3",
    ]
