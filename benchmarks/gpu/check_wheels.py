"""Check that the wheels in a folder need nothing the GPU machine lacks.

Reads each wheel's ``Requires-Dist`` (skipping extras; markers evaluated for CPython 3.12 on
x86-64 Linux, the device's Python) and fails unless every requirement is either another
carried wheel or in ``device_packages.txt``. Also fails on two versions of one package
(``pip install`` of the folder would refuse them).

    python benchmarks/gpu/check_wheels.py .whl
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

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


def main(folder: str) -> int:
    device = {
        normalise(line.strip())
        for line in (HERE / "device_packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        print(f"no wheels in {folder}")
        return 1
    carried: dict[str, str] = {}
    needs: list[tuple[str, Requirement]] = []
    problems: list[str] = []
    for wheel in wheels:
        name, version, found = requirements(wheel)
        if name in carried:
            problems.append(f"two versions of {name}: {carried[name]} and {version}")
        carried[name] = version
        if not wheel.name.endswith("-py3-none-any.whl"):
            problems.append(f"{wheel.name} is not pure Python (check its platform tag)")
        needs.extend((name, r) for r in found if r.marker is None or r.marker.evaluate(DEVICE))
    for name, requirement in needs:
        wanted = normalise(requirement.name)
        if (name, wanted) in NOT_IMPORTED:
            print(f"  {name} declares {requirement}, not imported: {NOT_IMPORTED[name, wanted]}")
        elif wanted in carried:
            if carried[wanted] not in requirement.specifier:
                problems.append(f"{name} needs {requirement}, carried {carried[wanted]}")
        elif wanted not in device:
            problems.append(f"{name} needs {requirement}: neither carried nor on the device")
    for name, version in sorted(carried.items()):
        print(
            f"carried {name}=={version}"
            + ("  (replaces the device's copy)" if name in device else "")
        )
    for name, requirement in needs:
        print(f"  {name} needs {requirement}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ".whl"))
