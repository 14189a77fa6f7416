"""Fault tolerance: supervisor restarts and their limits, hang detection with stack dumps, checkpoint
writes under disk faults, async checkpoint writes, and 2-rank CPU msrun jobs that are killed or hung
and still end with the uninterrupted run's weights."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from ms_suite.engine.callbacks.heartbeat import HANG_ENV, TEST_MODE_ENV, heartbeat_path
from ms_suite.launch.commands import Process
from ms_suite.launch.supervisor import RankLog, RestartPolicy, Supervisor
from ms_suite.launch.worker import MARK, read_markers

# One pytest-xdist worker builds the uninterrupted 2-rank run, once.
pytestmark = pytest.mark.xdist_group("faults")

RECIPE = "configs/quickstart.yaml"
# 11 steps per epoch x 2 epochs (2 ranks x batch 64 of 1437 digits), a checkpoint every 3 steps.
FAULTS = ["model.kwargs.base_width=8", "train.epochs=2", "train.batch_size=64", "eval.batch_size=128",
          "eval.every_epochs=0", "checkpoint.every_n_steps=3"]
KILL_AT_STEP = 7  # epoch 1, after the step-6 checkpoint


def _parked_at(rank: int, step: int) -> dict:
    """Test-mode environment that holds ``rank`` after ``step`` (once per run directory), so a kill
    lands at that step however fast the steps run."""
    return {TEST_MODE_ENV: "1", HANG_ENV: f"{rank}:{step}"}
HANG_AT_STEP = 14  # epoch 2, after the step-12 checkpoint


def restarts(run_dir) -> list:
    path = os.path.join(run_dir, "restarts.jsonl")
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


# --------------------------------------------------------------------------- supervisor with stand-in ranks


def _stand_in(rank: int, body: str, log_dir, run_dir) -> Process:
    """A process that behaves like a rank: start marker, heartbeats, faulthandler on SIGUSR1."""
    beat = heartbeat_path(str(run_dir), rank)
    code = ("import faulthandler, os, signal, sys, time\n"
            "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
            f"print('{MARK} rank {rank} pid', os.getpid(), flush=True)\n"
            f"os.makedirs(os.path.dirname({beat!r}), exist_ok=True)\n"
            f"def beat(step): open({beat!r}, 'w').write(f'{{step}} {{time.time()}}')\n"
            f"{body}\n")
    return Process([sys.executable, "-c", code], rank=rank, log=str(log_dir / f"worker_{rank}.log"))


class StandIns:
    """``launch(resume)`` for the supervisor: attempt k runs ``bodies[k]`` (rank 0 finishes with rank 1)."""

    def __init__(self, tmp_path, bodies):
        self.tmp_path, self.bodies, self.calls = tmp_path, bodies, []
        (tmp_path / "logs").mkdir(exist_ok=True)

    def __call__(self, resume):
        self.calls.append(resume)
        body = self.bodies[min(len(self.calls), len(self.bodies)) - 1]
        logs = self.tmp_path / "logs"
        return [_stand_in(0, "beat(1); time.sleep(1.5); sys.exit(0)", logs, self.tmp_path),
                _stand_in(1, body, logs, self.tmp_path)]

    def supervise(self, **policy) -> int:
        ranks = [RankLog(r, str(self.tmp_path / "logs" / f"worker_{r}.log")) for r in (0, 1)]
        return Supervisor(self, ranks, msrun=False, policy=RestartPolicy(run_dir=str(self.tmp_path), **policy)).run()


def test_a_rank_failing_every_time_stops_after_max_restarts(tmp_path, capsys):
    launch = StandIns(tmp_path, ["beat(1); print('Traceback: disk gone', flush=True); sys.exit(3)"])
    assert launch.supervise(max_restarts=2) == 1
    assert len(launch.calls) == 3  # the first launch and 2 restarts, no more
    records = restarts(tmp_path)
    assert [r["action"] for r in records] == ["restart", "restart", "stop"]
    assert all(r["rank"] == 1 and r["cause"] == "exit code 3" and r["resumed_step"] in (0, None) for r in records)
    err = capsys.readouterr().err
    assert "giving up: restart limit reached (--max-restarts 2)" in err and "attempt 3: rank 1 exit code 3" in err
    # every attempt keeps its own logs
    assert "disk gone" in (tmp_path / "logs" / "attempt_1" / "worker_1.log").read_text()
    assert "disk gone" in (tmp_path / "logs" / "worker_1.log").read_text()


def test_a_user_error_is_not_restarted(tmp_path, capsys):
    launch = StandIns(tmp_path, ["print('error: model.name foo is unknown', flush=True); sys.exit(2)"])
    assert launch.supervise(max_restarts=5) == 2
    assert len(launch.calls) == 1
    assert "not restarting: rank 1 exited with code 2, a user error" in capsys.readouterr().err
    assert [r["action"] for r in restarts(tmp_path)] == ["stop"]


def test_a_hung_rank_dumps_its_stack_and_the_job_restarts(tmp_path, capsys):
    hang = "beat(1)\ndef waiting_for_a_collective():\n    time.sleep(600)\nwaiting_for_a_collective()"
    launch = StandIns(tmp_path, [hang, "beat(1); sys.exit(0)"])
    start = time.time()
    assert launch.supervise(max_restarts=1, hang_timeout=3) == 0
    assert time.time() - start < 60 and len(launch.calls) == 2
    (record,) = restarts(tmp_path)
    assert record["rank"] == 1 and record["hung"] and "no progress for 3 s after step 1" in record["cause"]
    hung_log = (tmp_path / "logs" / "attempt_1" / "worker_1.log").read_text()
    assert "in waiting_for_a_collective" in hung_log and "most recent call first" in hung_log
    assert "error: rank 1 failed (no progress for 3 s after step 1, hung" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoint writes


class _Net:
    """A tiny cell for checkpoint I/O tests."""

    @staticmethod
    def build():
        from mindspore import nn

        return nn.Dense(3, 2)


def _disk_full_after(monkeypatch, written_bytes: int):
    """Make MindSpore's checkpoint writer write ``written_bytes`` to its file, then fail with ENOSPC."""
    import mindspore as ms

    def failing_save(save_obj, path, **kwargs):
        with open(path[: -len(".ckpt")] + ".tmp", "wb") as fh:  # MindSpore's own temporary name
            fh.write(b"\0" * written_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ms, "save_checkpoint", failing_save)


@pytest.mark.parametrize("async_save", [False, True])
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, async_save):
    from ms_suite.checkpoint import CheckpointManager, CheckpointWriteError, read_checkpoint

    net = _Net.build()
    manager = CheckpointManager(str(tmp_path), keep_last=1, async_save=async_save)
    good = manager.save(net, 3, {"step": 3})
    manager.flush()
    _disk_full_after(monkeypatch, 100)
    with pytest.raises(CheckpointWriteError) as caught:
        manager.save(net, 6, {"step": 6})
        manager.flush()
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 1
    assert f"writing checkpoint {tmp_path / 'step_00000006.ckpt'} failed: No space left on device" in message
    assert sorted(os.listdir(tmp_path)) == ["step_00000003.ckpt"]  # nothing half-written, nothing pruned
    params, meta = read_checkpoint(good)
    assert meta["step"] == 3 and np.array_equal(params["weight"].asnumpy(), net.weight.asnumpy())


def test_async_save_writes_the_values_of_the_step_it_was_called_at(tmp_path):
    from mindspore import Tensor

    from ms_suite.checkpoint import CheckpointManager, read_checkpoint

    net = _Net.build()
    at_save = net.weight.asnumpy().copy()
    manager = CheckpointManager(str(tmp_path), async_save=True)
    path = manager.save(net, 1, {"step": 1})
    net.weight.set_data(Tensor(at_save + 1.0))  # training goes on while the write runs
    manager.flush()
    np.testing.assert_array_equal(read_checkpoint(path)[0]["weight"].asnumpy(), at_save)


def test_keep_last_never_removes_the_newest_step_every_rank_saved(tmp_path):
    from ms_suite.checkpoint import CheckpointManager, common_steps, resume_point

    net = _Net.build()
    rank0 = CheckpointManager(str(tmp_path / "rank_0"), keep_last=1)
    rank1 = CheckpointManager(str(tmp_path / "rank_1"), keep_last=1)
    for manager in (rank0, rank1):
        manager.save(net, 3, {"step": 3})
    rank0.save(net, 6, {"step": 6})  # rank 1 never wrote step 6 (its write failed)
    assert sorted(os.listdir(tmp_path / "rank_0")) == ["step_00000003.ckpt", "step_00000006.ckpt"]
    assert common_steps(str(tmp_path)) == [3]
    assert resume_point(str(tmp_path)) == (3, str(tmp_path / "rank_0" / "step_00000003.ckpt"))
    rank1.save(net, 6, {"step": 6})
    rank0.save(net, 9, {"step": 9})
    assert sorted(os.listdir(tmp_path / "rank_0")) == ["step_00000006.ckpt", "step_00000009.ckpt"]


def test_resume_point_skips_a_step_that_a_rank_cannot_load(tmp_path):
    from ms_suite.checkpoint import CheckpointManager, resume_point

    net = _Net.build()
    for rank in (0, 1):
        manager = CheckpointManager(str(tmp_path / f"rank_{rank}"), keep_last=3)
        manager.save(net, 3, {"step": 3})
        manager.save(net, 6, {"step": 6})
    broken = tmp_path / "rank_1" / "step_00000006.ckpt"
    os.chmod(broken, 0o644)
    broken.write_bytes(broken.read_bytes()[:50])
    assert resume_point(str(tmp_path))[0] == 3


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys,
                                                                                cache_env):
    import mindspore as ms

    from ms_suite.cli.main import main
    from ms_suite.checkpoint import read_checkpoint

    real_save, calls = ms.save_checkpoint, []

    def full_on_second_write(save_obj, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            open(path[: -len(".ckpt")] + ".tmp", "wb").close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(save_obj, path, **kwargs)

    monkeypatch.setattr(ms, "save_checkpoint", full_on_second_write)
    out = tmp_path / "run"
    code = main(["train", "-c", RECIPE, "--output-dir", str(out), "--set", "model.kwargs.base_width=8",
                 "train.epochs=1", "train.batch_size=64", "eval.every_epochs=0", "checkpoint.every_n_steps=4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: writing checkpoint ") and "No space left on device" in err[-1]
    assert "step_00000008.ckpt failed" in err[-1] and "Traceback" not in "\n".join(err)
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000004.ckpt"]
    assert read_checkpoint(str(out / "checkpoints" / "step_00000004.ckpt"))[1]["step"] == 4


@pytest.mark.slow
def test_a_run_with_async_save_writes_the_checkpoints_a_synchronous_run_writes(tmp_path, cache_env):
    from conftest import cli
    from ms_suite.checkpoint import read_checkpoint

    tiny = ["model.kwargs.base_width=8", "train.epochs=1", "train.batch_size=64", "eval.every_epochs=0",
            "checkpoint.every_n_steps=4", "checkpoint.keep_last=5"]
    for mode in ("sync", "async"):
        cli("train", "-c", RECIPE, "--output-dir", str(tmp_path / mode), "--set", *tiny,
            f"checkpoint.async_save={mode == 'async'}")
    names = sorted(os.listdir(tmp_path / "sync" / "checkpoints"))
    assert names == sorted(os.listdir(tmp_path / "async" / "checkpoints"))
    assert names == ["best.ckpt"] + [f"step_{step:08d}.ckpt" for step in (8, 12, 16, 20, 22)]  # 4 pruned
    for name in names:
        (want, want_meta), (got, got_meta) = (read_checkpoint(str(tmp_path / m / "checkpoints" / name))
                                              for m in ("sync", "async"))
        assert want.keys() == got.keys() and want_meta["step"] == got_meta["step"], name
        for key in want:
            np.testing.assert_array_equal(got[key].asnumpy(), want[key].asnumpy(), err_msg=f"{name} {key}")


# --------------------------------------------------------------------------- 2-rank CPU msrun jobs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _launch(out, *flags, env=None) -> subprocess.Popen:
    return subprocess.Popen(["bash", "scripts/run_distribute_train.sh", "-c", RECIPE, "-n", "2", "--device", "CPU",
                             "--output-dir", str(out), "--master-port", str(_free_port()), *flags, "--set", *FAULTS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def _finish(job: subprocess.Popen, timeout: float = 900):
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    finally:
        if job.poll() is None:
            job.kill()
    return job.returncode, stdout, stderr


def _kill_rank_at(out, rank: int, step: int, job: subprocess.Popen) -> None:
    """SIGKILL ``rank`` (what the OOM killer does) once its heartbeat reports ``step``."""
    deadline = time.time() + 600
    while (_beat(out, rank) or -1) < step:
        assert job.poll() is None, "the job ended before the kill"
        assert time.time() < deadline, "the rank never reached the step"
        time.sleep(0.05)
    pid = read_markers((out / "logs" / f"worker_{rank}.log").read_text())[0]
    os.kill(pid, signal.SIGKILL)


def _beat(out, rank):
    from ms_suite.engine.callbacks import read_heartbeat

    return read_heartbeat(heartbeat_path(str(out), rank))


def _final_weights(run_dir) -> dict:
    """Every tensor of the run's final checkpoint (rank 0's): weights, BN statistics, optimizer state."""
    from ms_suite.checkpoint import read_checkpoint

    summary = json.loads((run_dir / "summary.json").read_text())
    params, _ = read_checkpoint(summary["final_checkpoint"])
    return {name: value.asnumpy() for name, value in params.items()}


def _assert_same_weights(run_dir, reference_dir):
    want, got = _final_weights(reference_dir), _final_weights(run_dir)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_env):
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    code, stdout, stderr = _finish(_launch(out))
    assert code == 0, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 22 and summary["restarts"] == 0 and summary["steps_lost"] == 0
    return out


@pytest.mark.slow
def test_sigkilled_rank_with_max_restarts_finishes_with_the_uninterrupted_weights(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    job = _launch(out, "--max-restarts", "1", env=_parked_at(1, KILL_AT_STEP))
    _kill_rank_at(out, 1, KILL_AT_STEP, job)
    code, stdout, stderr = _finish(job)
    assert code == 0, stderr[-3000:]
    assert "error: rank 1 failed (killed by SIGKILL)" in stderr and "restart 1 of 1: relaunching all ranks" in stderr
    (record,) = restarts(out)
    assert record["action"] == "restart" and record["rank"] == 1 and record["exit_code"] == -signal.SIGKILL
    assert (record["resumed_step"], record["last_step"]) == (6, KILL_AT_STEP)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["restarts"] == 1 and summary["steps_lost"] == record["last_step"] - record["resumed_step"]
    assert summary["steps"] == 22 and summary["replicas_in_sync"] is True
    assert f"{MARK} rank 1 exit code" not in (out / "logs" / "attempt_1" / "worker_1.log").read_text()
    _assert_same_weights(out, uninterrupted)


@pytest.mark.slow
def test_without_max_restarts_the_job_stops_naming_the_rank_and_resumes_by_hand(tmp_path, uninterrupted):
    out = tmp_path / "by_hand"
    job = _launch(out, env=_parked_at(0, KILL_AT_STEP))
    _kill_rank_at(out, 0, KILL_AT_STEP, job)
    code, stdout, stderr = _finish(job)
    assert code == 1 and "error: rank 0 failed (killed by SIGKILL); stopped all ranks of this node." in stderr
    assert "relaunching" not in stderr and not (out / "summary.json").exists()
    assert [r["action"] for r in restarts(out)] == ["stop"]
    code, stdout, stderr = _finish(_launch(out, "--resume", "auto"))
    assert code == 0, stderr[-3000:]
    assert "resumed from" in (out / "logs" / "worker_1.log").read_text()
    _assert_same_weights(out, uninterrupted)


@pytest.mark.slow
def test_a_hung_rank_is_detected_its_stack_logged_and_the_job_restarted(tmp_path, uninterrupted):
    out = tmp_path / "hung"
    env = {TEST_MODE_ENV: "1", HANG_ENV: f"1:{HANG_AT_STEP}"}
    code, stdout, stderr = _finish(_launch(out, "--max-restarts", "1", "--hang-timeout", "30", env=env))
    assert code == 0, stderr[-3000:]
    (record,) = restarts(out)
    assert record["hung"] and record["rank"] in (0, 1) and record["resumed_step"] == 12
    assert "no progress for 30 s after step" in record["cause"]
    hung_log = (out / "logs" / "attempt_1" / "worker_1.log").read_text()
    assert "most recent call first" in hung_log and "in _hang_once" in hung_log
    assert "most recent call first" in (out / "logs" / "attempt_1" / "worker_0.log").read_text()  # every rank's stack
    _assert_same_weights(out, uninterrupted)


def test_the_hang_hook_is_ignored_outside_test_mode(monkeypatch):
    from ms_suite.engine.callbacks import Heartbeat

    monkeypatch.setenv(HANG_ENV, "1:5")
    monkeypatch.delenv(TEST_MODE_ENV, raising=False)
    assert Heartbeat().hang_at is None
    monkeypatch.setenv(TEST_MODE_ENV, "1")
    assert Heartbeat().hang_at == (1, 5)


# --------------------------------------------------------------------------- launcher flags


def test_rank_table_commands_with_restart_flags_run_the_ranks_concurrently(tmp_path, capsys):
    from ms_suite.cli.launch import script_main
    from ms_suite.cli.main import main

    table = tmp_path / "hccl_8p.json"
    assert main(["rank-table", "generate", "--hosts", "10.0.0.1", "--device-ip-pattern", "192.168.10{device}.1",
                 "-o", str(table)]) == 0
    capsys.readouterr()
    assert script_main(["distribute", "-c", RECIPE, "-n", "8", "--rank-table", str(table), "--output-dir", "/r",
                        "--max-restarts", "3", "--hang-timeout", "600", "--print-cmd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "# --max-restarts / --hang-timeout are the launcher's: these commands run the job once"
    commands = lines[2:]
    assert len(commands) == 9 and commands[-1] == "wait"
    assert all(line.endswith("> /r/logs/worker_%d.log 2>&1 &" % rank) for rank, line in enumerate(commands[:-1]))


@pytest.mark.parametrize("flags, fragment", [
    (["--max-restarts", "-1"], "--max-restarts -1 must be 0 or more"),
    (["--hang-timeout", "0"], "--hang-timeout 0 must be a positive number of seconds"),
])
def test_bad_restart_flags_are_one_line_errors(capsys, flags, fragment):
    from ms_suite.cli.launch import script_main

    assert script_main(["distribute", "-c", RECIPE, "-n", "2", *flags, "--print-cmd"]) == 2
    assert fragment in capsys.readouterr().err
