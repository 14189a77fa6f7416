"""Ascend/GPU code paths, exercised on CPU: mixed precision wiring, gradient clipping under tensor
parallelism, skipped overflow steps, and the device-specific file layouts (rank tables, profiles)."""
import contextlib
import dataclasses
import os

import numpy as np
import pytest

from conftest import ROOT
from ms_suite.config import load_config
from ms_suite.errors import UserError

TINY_DIGITS = ["model.kwargs.base_width=8", "train.batch_size=64"]


@contextlib.contextmanager
def trainer_setup(tmp_path, overrides, monkeypatch=None, device=None):
    """A Trainer after ``_setup`` on the quickstart recipe; ``device`` pretends the runtime found it."""
    from ms_suite.engine import trainer as trainer_module

    if device is not None:
        real = trainer_module.init_runtime
        monkeypatch.setattr(trainer_module, "init_runtime",
                            lambda *a, **k: dataclasses.replace(real(*a, **k), device=device))
    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"), TINY_DIGITS + list(overrides))
    trainer = trainer_module.Trainer(cfg, str(tmp_path / "run"), progress=False)
    with contextlib.ExitStack() as trainer._cleanup:  # what fit() holds around _setup
        trainer._setup()
        yield trainer


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_amp_network_is_the_one_the_optimizer_trains(tmp_path, monkeypatch, level):
    """auto_mixed_precision returns the network to use (O2/O3: wrapped to return float32)."""
    import mindspore as ms

    monkeypatch.chdir(tmp_path)  # O1's rewrite writes its generated code to ./rewritten_network
    with trainer_setup(tmp_path, [f"train.amp_level={level}"], monkeypatch, device="GPU") as trainer:
        trained = trainer.step.network.net  # NetWithLoss(net, loss): what the TrainStep differentiates
        assert trained is trainer.net and getattr(trained, "_amp_level", None) == level
        weights = {id(p) for p in trained.trainable_params()}
        assert weights == {id(p) for p in trainer.step.optimizer.parameters}
        out = trained(ms.Tensor(np.random.rand(2, *trainer.info.input_shape).astype(np.float32)))
        assert out.dtype == ms.float32 and out.shape == (2, 10)


def test_amp_stays_off_on_cpu(tmp_path):
    with trainer_setup(tmp_path, ["train.amp_level=O2"]) as trainer:
        assert trainer.net._amp_level == "" and trainer.step.network.net is trainer.net


def test_clipping_under_tensor_parallelism_is_refused(tmp_path):
    """Per-rank slices give per-rank norms: the trainer refuses before any device work."""
    from ms_suite.engine.trainer import Trainer

    parallel = ["parallel.mode=semi_auto_parallel", "parallel.model_parallel=2", "train.clip_grad_norm=1.0"]
    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"), TINY_DIGITS + parallel)
    with pytest.raises(UserError, match=r"train.clip_grad_norm=1.0 is not supported with parallel.model_parallel=2"):
        Trainer(cfg, str(tmp_path / "run"), progress=False).fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_clipping_with_data_parallel_degree_only_passes_the_check():
    from ms_suite.runtime.auto_parallel import check_trainer_support

    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"),
                      ["parallel.mode=semi_auto_parallel", "parallel.data_parallel=2", "train.clip_grad_norm=1.0"])
    check_trainer_support(cfg.parallel, cfg.train)


@pytest.mark.parametrize("inited, rank", [(False, 0), (True, 3)])
def test_unipruner_saves_under_this_process_rank(tmp_path, monkeypatch, inited, rank):
    """Golden Stick names UniPruner's periodic MINDIR/checkpoint by ``rank``: each rank its own."""
    import mindspore.communication as comm

    from ms_suite.compression.base import TrainContext, build_algorithm
    from ms_suite.data import DatasetInfo

    monkeypatch.setattr(comm.GlobalComm, "INITED", inited)
    monkeypatch.setattr(comm, "get_rank", lambda group=None: 3)
    cfg = load_config(os.path.join(ROOT, "configs/compress/resnet18_digits_unipruner.yaml"))
    info = DatasetInfo(num_classes=10, input_shape=(1, 8, 8), num_samples={"train": 0, "eval": 0})
    ctx = TrainContext(cfg, str(tmp_path), "Ascend", info, None)
    pruner = build_algorithm(cfg).uni_pruner(ctx)
    assert pruner._callback.rank == rank and pruner._callback.save_model  # Ascend: saves every frequency epochs


def test_gpu_profile_files_beside_the_ascend_ms_folder_reach_mindinsight(tmp_path):
    """MindSpore 2.7.2's GPU profiler writes its gpu_* files into the handler folder itself (rank_<r>/),
    not into the <host>_<pid>_<time>_ascend_ms folder it also creates there."""
    from ms_suite.engine.callbacks.profile_window import layout_for_mindinsight, profile_files

    raw = tmp_path / "profiler" / "rank_2"
    old, new = raw / "h_1_20260101000000000_ascend_ms", raw / "h_2_20260102000000000_ascend_ms"
    for folder in (old, new):
        (folder / "FRAMEWORK").mkdir(parents=True)
    (old / "cpu_op_type_info_0.csv").write_text("old")
    (new / "cpu_op_type_info_0.csv").write_text("new")
    os.utime(old, (1, 1))
    for name in ("gpu_op_detail_info_0.csv", "gpu_activity_data_0.csv", "gpu_op_type_info_0.csv"):
        (raw / name).write_text("gpu")
    copied = layout_for_mindinsight(profile_files(str(raw)), str(tmp_path / "profiler"), 2, {"rank_id": 2})
    assert sorted(copied) == ["cpu_op_type_info_2.csv", "gpu_activity_data_2.csv", "gpu_op_detail_info_2.csv",
                              "gpu_op_type_info_2.csv"]
    assert (tmp_path / "profiler" / "cpu_op_type_info_2.csv").read_text() == "new"
    assert (tmp_path / "profiler" / "profiler_info_2.json").is_file()


def test_logged_lr_follows_the_optimizer_position_after_skipped_overflow_steps(tmp_path):
    """An injected overflow (a dynamic loss scale near float32's maximum) skips the first updates: the
    logged LR is the one the optimizer applied, i.e. the schedule at the position a checkpoint resumes from."""
    from ms_suite.engine.callbacks import Callback
    from ms_suite.engine.trainer import Trainer
    from ms_suite.checkpoint import read_checkpoint

    class Record(Callback):
        rows = []

        def on_step_end(self, state):
            self.rows.append((state.step, state.lr, int(state.context.train_step.optimizer.global_step.asnumpy().item())))

    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"),
                      TINY_DIGITS + ["train.epochs=1", "train.loss_scale=dynamic", "train.loss_scale_value=3e38"])
    trainer = Trainer(cfg, str(tmp_path / "run"), callbacks=[Record()], progress=False)
    summary = trainer.fit()
    steps, lrs, updates = zip(*Record.rows)
    skipped = steps[-1] - updates[-1]
    assert 0 < skipped < steps[-1]  # the overflow was injected, and training went on afterwards
    schedule = np.asarray(trainer.lr)
    np.testing.assert_allclose(lrs, schedule[np.maximum(np.asarray(updates) - 1, 0)], rtol=1e-6)
    params, meta = read_checkpoint(summary["final_checkpoint"])
    assert meta["step"] == steps[-1] and int(params["global_step"].asnumpy().item()) == updates[-1]
    assert lrs[-1] == pytest.approx(float(schedule[updates[-1] - 1]))
