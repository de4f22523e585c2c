"""Check that the wheels in a folder need nothing the GPU machine lacks.

Reads each wheel's ``Requires-Dist`` (skipping extras; markers evaluated for CPython 3.12.3 on
x86-64 Linux, the device's Python) and fails unless every requirement is either another
carried wheel or in ``device_packages.txt``, and unless its version specifier admits the
carried version or the device's version where ``device_packages.txt`` gives one
(``NAME==VERSION``); requirements with a specifier on a device package of unknown version are
listed as unverified. diffusers also checks versions at run time from its own table
(``diffusers/dependency_versions_table.py``, e.g. ``peft>=0.17.0``, ``python>=3.11``): those
entries are checked the same way when the package is carried or of known version. Also fails
on two versions of one package (``pip install`` of the folder would refuse them).

    python benchmarks/gpu/check_wheels.py .whl
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

HERE = Path(__file__).resolve().parent
#: Declared requirements that are never imported on the device's Python 3.12, with the reason.
NOT_IMPORTED = {
    ("diffusers", "importlib-metadata"): "diffusers/utils/import_utils.py imports it only on "
    "Python < 3.8 (else importlib.metadata)",
}
DEVICE = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "os_name": "posix", "extra": ""}  # fmt: skip


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(wheel: Path) -> tuple[str, str, list[Requirement]]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta).decode()
    fields = dict(re.findall(r"^(Name|Version): (.+)$", text, re.M))
    found = [Requirement(v) for v in re.findall(r"^Requires-Dist: (.+)$", text, re.M)]
    return normalise(fields["Name"]), fields["Version"], found


def runtime_table(wheel: Path) -> list[Requirement]:
    """diffusers' run-time version table (``deps = {...}``), or nothing for other wheels."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith("/dependency_versions_table.py")]
        if not names:
            return []
        tree = ast.parse(archive.read(names[0]).decode())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "deps" for t in node.targets
        ):
            return [Requirement(v) for v in ast.literal_eval(node.value).values()]
    return []


def device_packages(path: Path = HERE / "device_packages.txt") -> dict[str, str | None]:
    """``{name: version or None}`` from ``device_packages.txt`` (``NAME`` or ``NAME==VERSION``)."""
    found: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        found[normalise(name)] = version.strip() or None
    return found


def admits(requirement: Requirement, version: str) -> bool:
    return requirement.specifier.contains(Version(version), prereleases=True)


def main(folder: str, device_list: Path = HERE / "device_packages.txt") -> int:
    device = device_packages(device_list)
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        print(f"no wheels in {folder}")
        return 1
    carried: dict[str, str] = {}
    needs: list[tuple[str, Requirement]] = []
    runtime: list[tuple[str, Requirement]] = []
    problems: list[str] = []
    unverified: list[str] = []
    for wheel in wheels:
        name, version, found = requirements(wheel)
        if name in carried:
            problems.append(f"two versions of {name}: {carried[name]} and {version}")
        carried[name] = version
        if not wheel.name.endswith("-py3-none-any.whl"):
            problems.append(f"{wheel.name} is not pure Python (check its platform tag)")
        needs.extend((name, r) for r in found if r.marker is None or r.marker.evaluate(DEVICE))
        runtime.extend((name, r) for r in runtime_table(wheel))
    for name, requirement in needs:
        wanted = normalise(requirement.name)
        if (name, wanted) in NOT_IMPORTED:
            print(f"  {name} declares {requirement}, not imported: {NOT_IMPORTED[name, wanted]}")
        elif wanted in carried:
            if not admits(requirement, carried[wanted]):
                problems.append(f"{name} needs {requirement}, carried {carried[wanted]}")
        elif wanted not in device:
            problems.append(f"{name} needs {requirement}: neither carried nor on the device")
        elif device[wanted] is not None:
            if not admits(requirement, device[wanted]):
                problems.append(f"{name} needs {requirement}, the device has {device[wanted]}")
        elif requirement.specifier:
            unverified.append(f"{name} needs {requirement}: the device's version is not known")
    for name, requirement in runtime:
        wanted = normalise(requirement.name)
        have = {"python": DEVICE["python_full_version"], **device, **carried}.get(wanted)
        if have is not None and requirement.specifier and not admits(requirement, have):
            problems.append(
                f"{name} checks {requirement} at run time, the device would have {have}"
            )
    for name, version in sorted(carried.items()):
        print(
            f"carried {name}=={version}"
            + ("  (replaces the device's copy)" if name in device else "")
        )
    for name, requirement in needs:
        wanted = normalise(requirement.name)
        if (name, wanted) in NOT_IMPORTED:
            continue
        have = carried.get(wanted) or device.get(wanted) or "version unknown"
        print(f"  {name} needs {requirement} ({have})")
    for line in unverified:
        print(f"UNVERIFIED: {line}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ".whl"))
