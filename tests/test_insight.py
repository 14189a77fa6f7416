"""MindInsight: a run with summaries and a profile window, laid out so that MindInsight 2.3.1,
started through `ms-suite insight start`, lists its scalars and answers operator statistics."""
import csv
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import TINY, cli

# End-to-end (trains or runs the CLI in a subprocess); one pytest-xdist worker builds the profiled run, once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("insight")]

PROFILED = ["summary.enabled=true", "summary.every_n_steps=5", "summary.histograms=true",
            "profile.enabled=true", "profile.start_step=3", "profile.stop_step=5"]
SCALARS = {"loss/scalar", "lr/scalar", "samples_per_s/scalar", "data_ms/scalar", "compute_ms/scalar",
           "eval/top1/scalar"}


@pytest.fixture(scope="session")
def profiled_run(tmp_path_factory, cache_env):
    """A tiny run with MindInsight summaries and a profile of steps 3-5, alone in its runs folder."""
    out = tmp_path_factory.mktemp("insight_runs") / "profiled"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", *TINY, *PROFILED)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, path: str, body: dict = None):
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/mindinsight/{path}", data=data),
                                timeout=30) as response:
        return json.loads(response.read())


def loaded_train_job(port: int, train_id: str, attempts: int = 60) -> dict:
    """MindInsight loads summaries in the background: poll its listing until all the scalars are in."""
    for _ in range(attempts):
        jobs = request(port, "datavisual/train-jobs?offset=0&limit=10")["train_jobs"]
        job = next((j for j in jobs if j["train_id"] == train_id), None)
        if job and SCALARS <= set(job["plugins"].get("scalar", [])):
            return job
        time.sleep(1)
    raise AssertionError(f"MindInsight did not list {train_id} with the scalars {sorted(SCALARS)}: {jobs}")


def mindinsight_cpu_columns() -> tuple:
    """MindInsight's CPU operator table columns, read in MindInsight's own environment."""
    from ms_suite.profiling.insight import bin_dir

    code = ("import json; from mindinsight.profiler.common.validator.validate import CPU_DETAIL_COL, CPU_TYPE_COL; "
            "print(json.dumps([CPU_TYPE_COL, CPU_DETAIL_COL]))")
    out = subprocess.run([os.path.join(bin_dir(), "python"), "-c", code], capture_output=True, text=True, check=True)
    return tuple(json.loads(out.stdout))


def test_summary_and_profile_layout(profiled_run):
    CPU_TYPE_COL, CPU_DETAIL_COL = mindinsight_cpu_columns()
    out = profiled_run
    assert len(list(out.glob("events.out.events.summary.*_MS"))) == 1  # in the run dir: a MindInsight train job
    profiler = out / "profiler"
    info = json.loads((profiler / "profiler_info_0.json").read_text())
    assert info["context_mode"] == "graph" and info["profile_steps"] == [3, 5] and info["rank_size"] == 1
    with open(profiler / "cpu_op_type_info_0.csv") as fh:
        rows = list(csv.reader(fh))
    assert len(rows[0]) == len(CPU_TYPE_COL) and "Conv2D" in {r[0] for r in rows[1:]}
    with open(profiler / "cpu_op_detail_info_0.csv") as fh:
        assert len(next(csv.reader(fh))) >= len(CPU_DETAIL_COL)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile_steps"] == [3, 5] and summary["profile_trace"].startswith(str(profiler / "rank_0"))
    trace = json.loads(open(summary["profile_trace"]).read())  # Chrome trace format
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    assert any(e.get("ph") == "X" for e in events)


def test_mindinsight_shows_scalars_and_operator_statistics(profiled_run, tmp_path):
    port, env = free_port(), {"HOME": str(tmp_path)}  # MindInsight's workspace (logs) goes under HOME
    started = cli("insight", "start", "--runs", str(profiled_run.parent), "--port", str(port), env=env)
    try:
        assert f"http://127.0.0.1:{port}" in started.stdout
        job = loaded_train_job(port, "./profiled")
        assert job["plugins"]["histogram"] and job["plugins"]["graph"]
        assert job["profiler_dir"] == "./profiler" and job["profiler_type"] == "cpu"
        query = "profile/ops/search?train_id=./profiled&profile=profiler"
        by_type = request(port, query, {"op_type": "cpu_op_type", "device_id": "0", "filter_condition": {},
                                        "group_condition": {"limit": 50, "offset": 0}})
        assert by_type["size"] > 0 and "Conv2D" in {row[0] for row in by_type["object"]}
        by_op = request(port, query, {"op_type": "cpu_op_info", "device_id": "0", "filter_condition": {},
                                      "group_condition": {"limit": 5, "offset": 0}})
        assert by_op["object"]
        busy = cli("insight", "start", "--runs", str(profiled_run.parent), "--port", str(port), env=env, check=False)
        assert busy.returncode == 2 and f"port {port} is in use" in busy.stderr
    finally:
        cli("insight", "stop", "--port", str(port), env=env)
    again = cli("insight", "stop", "--port", str(port), env=env, check=False)
    assert again.returncode == 2 and f"no MindInsight of yours is running on port {port}" in again.stderr


def test_insight_without_mindinsight_is_one_line(tmp_path):
    proc = cli("insight", "start", "--runs", str(tmp_path), "--port", str(free_port()), check=False,
               env={"MS_SUITE_INSIGHT_BIN": str(tmp_path / "bin")})
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: mindinsight not found in {tmp_path / 'bin'}")
    assert "MS_SUITE_INSIGHT_BIN" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_insight_start_needs_the_runs_folder(tmp_path):
    proc = cli("insight", "start", "--runs", str(tmp_path / "nope"), "--port", str(free_port()), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: --runs {tmp_path / 'nope'}: no such folder")
