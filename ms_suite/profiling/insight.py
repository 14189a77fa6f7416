"""Start and stop MindInsight 2.3.1 on a folder of runs.

MindInsight lives in its own environment (``make setup`` builds ``.venv-insight`` beside ``.venv``):
it caps protobuf at 3.20.1, below what the suite's ``onnx`` needs. The ``mindinsight`` command is
looked up in ``$MS_SUITE_INSIGHT_BIN``, then in ``.venv-insight/bin`` next to the running
environment, then in the running environment's own bin folder.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import List

from ms_suite.errors import UserError

HOST = "127.0.0.1"  # MindInsight's default bind address
BIN_ENV = "MS_SUITE_INSIGHT_BIN"
INSIGHT_VENV = ".venv-insight"


def candidate_bin_dirs() -> List[str]:
    """Where ``mindinsight`` (and the ``gunicorn`` it launches) may live, in lookup order."""
    if os.environ.get(BIN_ENV):
        return [os.environ[BIN_ENV]]
    own = os.path.dirname(os.path.abspath(sys.executable))
    return [os.path.join(os.path.dirname(sys.prefix), INSIGHT_VENV, "bin"), own]


def bin_dir() -> str:
    """The first candidate folder that holds ``mindinsight``."""
    candidates = candidate_bin_dirs()
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "mindinsight")):
            return folder
    raise UserError(f"mindinsight not found in {' or '.join(candidates)}; run `make setup` (builds {INSIGHT_VENV}) "
                    f"or set {BIN_ENV} to the bin folder of an environment with mindinsight==2.3.1")


def _run(args: List[str]) -> subprocess.CompletedProcess:
    folder = bin_dir()
    env = dict(os.environ, PATH=folder + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([os.path.join(folder, "mindinsight"), *args], env=env, capture_output=True, text=True)


def check_port_free(port: int, host: str = HOST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except PermissionError:
            raise UserError(f"port {port} needs root privileges here; choose one above 1023 with --port") from None
        except OSError:
            raise UserError(f"port {port} is in use (a MindInsight started earlier? `ms-suite insight stop --port "
                            f"{port}`); or choose another with --port") from None


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def start(runs: str, port: int) -> str:
    """Start MindInsight on ``runs`` (every child folder with summaries is a train job); returns its URL."""
    if not os.path.isdir(runs):
        raise UserError(f"--runs {runs}: no such folder; pass the folder that holds your run directories "
                        f"(default runs/)")
    check_port_free(port)
    result = _run(["start", "--summary-base-dir", os.path.abspath(runs), "--port", str(port)])
    if result.returncode != 0:
        raise UserError(f"mindinsight start failed: {_last_line(result)}")
    return f"http://{HOST}:{port}"


def stop(port: int) -> None:
    result = _run(["stop", "--port", str(port)])
    if result.returncode != 0:
        raise UserError(f"no MindInsight of yours is running on port {port} ({_last_line(result)})")
