#!/usr/bin/env bash
# Every throughput benchmark of issue #11 in one run: generation, training, metrics.
#
#   benchmarks/gpu/run_all.sh           GPU, about 9 minutes (for a device call of 580 s)
#   benchmarks/gpu/run_all.sh --smoke   CPU, every part at toy size (about 2 minutes)
#
# Writes into $OUT (default var/gpu-run/), flat, 6 files: env.json, generation.json,
# sd_lora.json, conditional.json, inception.json, run_all.log. Each part is its own process
# with its own time budget (it skips what would not fit and writes its JSON after every row)
# and a hard limit (timeout), all inside RUN_ALL_SECONDS (default 560) from the start. A part's
# budget counts from its process's start (imports included), 5 s inside its hard limit.
# Wheels in .whl/ (benchmarks/gpu/prepare_wheels.sh) are installed first into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-$PWD/var/gpu-run}
TOTAL=${RUN_ALL_SECONDS:-560}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_all.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
echo "run_all: $(date -u +%FT%TZ) smoke=$SMOKE python=$PY out=$OUT budget=${TOTAL}s"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "run_all: wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" benchmarks/gpu/report.py env "$OUT"

# part NAME LIMIT_S SCRIPT ARGS...: run one part under min(LIMIT_S, time left - 5 s).
part() {
  local name=$1 limit=$2 left
  shift 2
  left=$((TOTAL - SECONDS - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    echo "== $name: skipped, ${left}s left"
    return
  fi
  echo "== $name (limit ${limit}s, at ${SECONDS}s)"
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$PY" "$@"
  echo "== $name: rc=$? after $((SECONDS - start))s"
}

if [ "$SMOKE" = 1 ]; then
  part generation 150 benchmarks/generation.py --smoke --json "$OUT/generation.json"
  part sd_lora 120 benchmarks/sd_lora.py --smoke --batch-sizes 2,4 --work /tmp/fairderm-run-all \
    --json "$OUT/sd_lora.json"
  part conditional 120 benchmarks/conditional.py --smoke --json "$OUT/conditional.json"
  part inception 120 benchmarks/inception.py --smoke --json "$OUT/inception.json"
else
  part generation 350 benchmarks/generation.py --budget-s 345 --images 128 \
    --json "$OUT/generation.json"
  part sd_lora 75 benchmarks/sd_lora.py --budget-s 70 --batch-sizes 4,16 --steps 12 \
    --work /tmp/fairderm-run-all --json "$OUT/sd_lora.json"
  part conditional 65 benchmarks/conditional.py --budget-s 60 --steps 8 --images 64 \
    --json "$OUT/conditional.json"
  part inception 55 benchmarks/inception.py --budget-s 50 --n 1000 --size 256 \
    --json "$OUT/inception.json"
fi
echo "== summary (${SECONDS}s)"
"$PY" benchmarks/gpu/report.py summary "$OUT"
