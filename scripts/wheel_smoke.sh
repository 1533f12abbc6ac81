#!/usr/bin/env bash
# Build the wheel, install it (not editable) into a fresh virtualenv, and use it from an empty
# folder the way a user would after `pip install zerowizard` / `pipx install` / `uv tool install`:
# the presets, a catalog model's estimate, an export and a validate must work from the package.
#
#   bash scripts/wheel_smoke.sh [PYTHON]        (default python3; exit 0 ok, 1 on any failure)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { echo "[wheel_smoke] $*" >&2; }

say "building the wheel"
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" . >/dev/null 2>&1 \
  || "$PY" -m pip wheel --no-deps -q -w "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/zerowizard-*.whl)
say "installing $(basename "$WHEEL") into a fresh venv"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "$WHEEL"
ZW="$WORK/venv/bin/zerowizard"
mkdir "$WORK/user" && cd "$WORK/user"

check() {  # check EXPECTED_EXIT DESCRIPTION -- COMMAND...
  local want=$1 what=$2; shift 3
  local rc=0
  "$@" >"$WORK/out" 2>&1 || rc=$?
  if [ "$rc" != "$want" ] || grep -q "Traceback" "$WORK/out"; then
    say "FAIL: $what (exit $rc, expected $want)"; cat "$WORK/out" >&2; exit 1
  fi
  say "ok: $what"
}
"$WORK/venv/bin/python" - <<'PY'
import zerowizard.core.paths as p
assert "site-packages" in str(p.PRESETS), p.PRESETS
assert (p.PRESETS / "deepspeed" / "deepspeed_zero2.json").is_file()
PY
say "ok: presets are read from the installed package"
check 0 "presets" -- "$ZW" presets
check 0 "estimate a catalog model" -- "$ZW" estimate --model llama-3-8b --method lora --gpus 8xA100-80GB
check 0 "export" -- "$ZW" --export ds.json --model qwen2.5-7b --gpus 4xH100-80GB --deepspeed deepspeed_zero3
check 0 "validate the exported JSON" -- "$ZW" validate ds.json --gpus 4
check 0 "save a plan" -- "$ZW" --save-plan plan.yaml --recipe llama3_8b_lora_alpaca_e3 --gpus 8xA100-80GB
check 0 "validate the plan" -- "$ZW" validate plan.yaml
check 2 "a bad flag is exit 2, one line" -- "$ZW" estimate --micro-batch -1
say "the wheel works"
