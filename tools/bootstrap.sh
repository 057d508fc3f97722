#!/usr/bin/env bash
# Creates (or reuses) the project-local virtual environment .venv with the pinned stack:
#   torch/torchvision (requirements/torch.txt), mmcv 2.1.0 built from its source archive with ops,
#   the runtime, test, deployment and documentation requirements, and mmbasis itself (editable).
#
# * A finished environment carries the stamp .venv/.mmbasis-env holding a hash of everything that
#   defines it (this script, requirements/*.txt, the Python version). Same hash -> nothing is installed.
# * Any failure names the failed step, shows the end of its log and removes the half-built .venv, so
#   a later run never mistakes it for a good one.
# * The mmcv wheel (a ~16 minute build on 2 cores) is cached per machine in
#   ${MMBASIS_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/mmbasis}/wheels/<torch version>-<cpu|cuda>/ and
#   only a complete wheel is ever moved there.
# Environment knobs: PYTHON (interpreter for the venv, default python3), MMBASIS_CACHE_DIR, MAX_JOBS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.mmbasis-env"
LOG="$ROOT/.bootstrap.log"
PYTHON="${PYTHON:-python3}"
CACHE_DIR="${MMBASIS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmbasis}"
MMCV_VERSION="2.1.0"

die() { echo "bootstrap: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' on PATH (set PYTHON=/path/to/python3.11)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "'$PYTHON' is $("$PYTHON" -V 2>&1); Python >= 3.9 is required (3.11 is the verified version)"

env_hash() {
    { cat "$ROOT/tools/bootstrap.sh" "$ROOT"/requirements/*.txt; "$PYTHON" -V 2>&1; } | sha256sum | cut -c1-16
}
WANT="$(env_hash)"

# Serialise concurrent runs (e.g. `make demo` and `make test` started together).
exec 9>"$ROOT/.venv.lock"
flock 9

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    exit 0   # environment is complete and current: install nothing
fi

CURRENT_STEP=""
cleanup_on_failure() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo >&2
        echo "bootstrap: FAILED at step: ${CURRENT_STEP:-start-up} (exit code $rc)" >&2
        if [[ -f "$LOG" ]]; then
            echo "---- last 25 lines of $LOG ----" >&2
            tail -n 25 "$LOG" >&2 || true
            echo "-------------------------------" >&2
        fi
        echo "bootstrap: removing the half-built environment $VENV; fix the cause and run the command again." >&2
        rm -rf "$VENV"
    fi
    [[ -n "${WORK_TMP:-}" ]] && rm -rf "$WORK_TMP"
    exit $rc
}
trap cleanup_on_failure EXIT

step() {  # step "description" command args...
    CURRENT_STEP="$1"; shift
    echo "bootstrap: $CURRENT_STEP" >&2
    echo "==== $CURRENT_STEP ($(date -u +%FT%TZ))" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

: >"$LOG"
if [[ -d "$VENV" ]]; then
    echo "bootstrap: $VENV is missing its completion stamp or is out of date; rebuilding it" >&2
    rm -rf "$VENV"
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

step "create virtual environment .venv with $("$PYTHON" -V 2>&1)" "$PYTHON" -m venv "$VENV"
step "upgrade pip (package registry reachable?)" "${PIP[@]}" install --upgrade "pip<27"
step "install torch and torchvision (requirements/torch.txt)" "${PIP[@]}" install -r requirements/torch.txt
step "install build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" install "setuptools==80.9.0" wheel ninja

TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0] + ("-cuda" if torch.cuda.is_available() else "-cpu"))')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE_DIR/wheels/torch-$TORCH_TAG"
mkdir -p "$WHEEL_DIR"
WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-"$PY_TAG"-*.whl 2>/dev/null | head -n 1 || true)"

if [[ -z "$WHEEL" ]]; then
    CURRENT_STEP="check for a C++ compiler (needed once to build mmcv's ops)"
    command -v "${CXX:-g++}" >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 \
        || die "no C++ compiler found; install one (e.g. 'apt-get install g++') and run again"
    WORK_TMP="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
    step "download the mmcv $MMCV_VERSION source archive" \
        "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$WORK_TMP/src"
    step "unpack the mmcv source archive" tar -xzf "$WORK_TMP"/src/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK_TMP"
    SRC="$WORK_TMP/mmcv-$MMCV_VERSION"
    # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes -std=c++17.
    CURRENT_STEP="patch mmcv's setup.py from -std=c++17 to -std=c++20"
    grep -q -- '-std=c++17' "$SRC/setup.py" || die "mmcv setup.py has no -std=c++17 flag to patch; the source archive is not the expected one"
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    FORCE=()
    [[ "$TORCH_TAG" == *-cuda ]] && FORCE=(env FORCE_CUDA=1)
    step "build mmcv $MMCV_VERSION with ops (about 16 minutes on 2 cores, once per machine)" \
        env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${FORCE[@]}" \
        "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WORK_TMP/out" "$SRC"
    CURRENT_STEP="store the built mmcv wheel in the cache $WHEEL_DIR"
    BUILT="$(ls "$WORK_TMP"/out/mmcv-*.whl)"
    mv "$BUILT" "$WHEEL_DIR/.partial.whl" && mv "$WHEEL_DIR/.partial.whl" "$WHEEL_DIR/$(basename "$BUILT")"
    WHEEL="$WHEEL_DIR/$(basename "$BUILT")"
else
    echo "bootstrap: reusing cached mmcv wheel $WHEEL" >&2
fi

step "install mmcv from $(basename "$WHEEL")" "${PIP[@]}" install --no-deps "$WHEEL"
step "install mmengine, mmdet and the rest (requirements/runtime.txt, tests.txt, deploy.txt, docs.txt, pinned by constraints.txt)" \
    "${PIP[@]}" install -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt \
    -r requirements/docs.txt -c requirements/constraints.txt
step "install mmbasis in editable mode" "${PIP[@]}" install --no-deps --no-build-isolation -e .
# Checks the stack, not mmbasis' own code: a bug in mmbasis must not make a good environment look broken.
step "check the installed stack (pip check, mmcv ops, mmdet, mmbasis on the path)" bash -c \
    "'$PY' -m pip check && '$PY' -c 'import importlib.util, mmcv, mmdet; from mmcv.ops import nms, RoIAlign; assert importlib.util.find_spec(\"mmbasis\"), \"mmbasis is not importable\"; print(\"mmcv\", mmcv.__version__, \"mmdet\", mmdet.__version__)'"

echo "$WANT" >"$STAMP"
CURRENT_STEP=""
echo "bootstrap: environment ready in $VENV" >&2
