#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .whl/ (git-ignored; carried with the run).
#
# The device's python3 (3.12, /opt/torch/.venv) has torch, transformers, accelerate,
# safetensors, huggingface-hub, tokenizers, scipy, scikit-learn, pillow and numpy, but not
# diffusers, lpips or pytorch-fid, and a peft of unknown version. These four are pure-Python
# (py3-none-any) wheels at the versions requirements.txt pins; --no-deps because everything
# they need is already on the device (checked against the device's package list). About 5 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
PACKAGES=(diffusers lpips pytorch-fid peft)
pins=()
for name in "${PACKAGES[@]}"; do
  pin=$(grep -E "^${name}==" requirements.txt) || { echo "no pin for $name in requirements.txt"; exit 1; }
  pins+=("$pin")
done
rm -rf .whl
mkdir -p .whl
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${pins[@]}"
ls -l .whl
du -sh .whl
"$PY" benchmarks/gpu/check_wheels.py .whl
# The same install line the device run uses, into a scratch folder here: nothing else is pulled.
scratch=$(mktemp -d)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$scratch" .whl/*.whl
ls "$scratch"
rm -rf "$scratch"
