"""Start and stop MindInsight 2.3.1 (installed with the suite) on a folder of runs."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import List

from ms_suite.errors import UserError

HOST = "127.0.0.1"  # MindInsight's default bind address


def _bin_dir() -> str:
    """The environment's bin folder: ``mindinsight`` and the ``gunicorn`` it launches live there."""
    return os.path.dirname(os.path.abspath(sys.executable))


def _run(args: List[str]) -> subprocess.CompletedProcess:
    exe = os.path.join(_bin_dir(), "mindinsight")
    if not os.path.isfile(exe):
        raise UserError(f"mindinsight is not installed next to {sys.executable}; "
                        f"install the suite's requirements (pip install -e .)")
    env = dict(os.environ, PATH=_bin_dir() + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True)


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
