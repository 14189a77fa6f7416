# shellcheck shell=bash
# Sourced by scripts/run_*.sh: find the Python that has ms-suite and hand the flags to its launcher.
# PYTHON=/path/to/python overrides the choice (default: the repo's .venv, then python3 on PATH).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        printf '%s\n' "$PYTHON"
    elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        printf '%s\n' "$REPO_ROOT/.venv/bin/python"
    else
        command -v python3 || { echo "error: no python3 on PATH; run 'make setup' or set PYTHON" >&2; return 1; }
    fi
}

# launch SCRIPT_KIND ARGS...: run `python -m ms_suite.cli.launch SCRIPT_KIND ARGS...` (never returns).
launch() {
    local python
    python="$(pick_python)"
    export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
    if ! "$python" -c 'import ms_suite' 2>/dev/null; then
        echo "error: $python cannot import ms_suite; run 'make setup' in $REPO_ROOT or set PYTHON=/path/to/python" >&2
        exit 2
    fi
    exec "$python" -m ms_suite.cli.launch "$@"
}
