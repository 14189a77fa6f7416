"""The trainer's semi-auto/auto parallel path, checked on CPU without running a sliced graph
(MindSpore refuses semi-auto and auto parallel on CPU): the step's gradient handling per mode,
full-batch data, per-rank checkpoints and resume, merging slices, and the eager collectives."""
import contextlib
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from conftest import ROOT
from ms_suite.config import load_config
from ms_suite.config.schema import ParallelConfig, TrainConfig
from ms_suite.checkpoint import atomic_save, merge_slices, own_slice, rank_dir
from ms_suite.engine.grad_reduce import BucketedGradReducer, bucket_bounds
from ms_suite.engine.train_step import TrainStep
from ms_suite.errors import UserError
from ms_suite.checkpoint import read_checkpoint
from ms_suite.runtime import distributed
from ms_suite.runtime.auto_parallel import check_trainer_support, context_kwargs
from ms_suite.runtime.distributed import DistInfo, agree_on_step, check_grad_reduce, last_stage_loss

SEMI = "semi_auto_parallel"


class _Loss(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(4, 3)
        self.ce = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def construct(self, x, y):
        return self.ce(self.dense(x), y)


def _step(**kwargs) -> TrainStep:
    loss = _Loss()
    return TrainStep(loss, nn.SGD(loss.trainable_params(), 0.1), **kwargs)


def test_gradient_handling_per_mode():
    standalone, dp = _step(), _step(parallel="data_parallel")
    semi, pipeline = _step(parallel=SEMI), _step(parallel=SEMI, micro_batches=4)
    assert standalone.reducer is None and not standalone.sliced
    assert isinstance(dp.reducer, nn.DistributedGradReducer) and not dp.sliced
    # semi-auto: MindSpore's parallel pass inserts the reductions; the overflow flag is summed over ranks
    assert semi.reducer is None and semi.sliced and semi.all_reduce is not None and semi.pipeline_reducer is None
    assert pipeline.reducer is None and isinstance(pipeline.pipeline_reducer, nn.PipelineGradReducer)
    accumulators = [p.name for p in pipeline.pipeline_reducer.get_parameters() if p.name.startswith("accu_grads.")]
    assert accumulators == ["accu_grads.dense.weight", "accu_grads.dense.bias"]  # the names the pipeline pass fills


def test_grad_reduce_options_pick_the_bucketed_reducer():
    assert isinstance(_step(parallel="data_parallel", grad_buckets=None).reducer, nn.DistributedGradReducer)
    half = _step(parallel="data_parallel", grad_reduce_dtype="float16").reducer
    packed = _step(parallel="data_parallel", grad_buckets=1).reducer
    assert isinstance(half, BucketedGradReducer) and half.dtype == ms.float16 and len(half.groups) == 2
    assert packed.dtype == ms.float32 and packed.groups == [(1, 0)]  # bias (last in backward order) first
    assert _step(parallel="standalone", grad_reduce_dtype="float16").reducer is None


def test_bucket_bounds_split_sizes_evenly_in_order():
    assert bucket_bounds([4, 4, 4, 4], 2) == [0, 2]
    assert bucket_bounds([10, 1, 1, 1], 2) == [0, 1]
    assert bucket_bounds([1, 1, 1], 1) == [0] and bucket_bounds([1, 1], 5) == [0, 1]


@pytest.mark.parametrize("cfg, device, message", [
    (ParallelConfig(mode="data_parallel", grad_reduce_dtype="bfloat16"), "CPU", "bfloat16 needs Ascend or GPU"),
    (ParallelConfig(mode=SEMI, grad_reduce_dtype="float16"), "Ascend", "apply to parallel.mode=data_parallel"),
    (ParallelConfig(mode=SEMI, grad_buckets=2), "GPU", "apply to parallel.mode=data_parallel"),
])
def test_grad_reduce_options_that_do_not_apply_are_refused(cfg, device, message):
    with pytest.raises(UserError, match=message):
        check_grad_reduce(cfg, device)


def test_grad_reduce_options_accepted_for_data_parallel():
    check_grad_reduce(ParallelConfig(mode="data_parallel", grad_reduce_dtype="float16", grad_buckets=4), "CPU")
    check_grad_reduce(ParallelConfig(mode="data_parallel", grad_reduce_dtype="bfloat16"), "Ascend")
    check_grad_reduce(ParallelConfig(mode=SEMI), "Ascend")


def test_data_shards_and_checkpoint_writers():
    data_parallel, semi = DistInfo(rank=3, world_size=8, mode="data_parallel"), DistInfo(3, 8, SEMI, 2)
    assert data_parallel.data_shards == (8, 3) and semi.data_shards == (1, 0)  # full batch on every rank
    assert data_parallel.replicated and not semi.replicated  # no broadcast / replica check when sliced
    assert not data_parallel.writes_checkpoints and semi.writes_checkpoints and DistInfo().writes_checkpoints


def test_context_kwargs_are_accepted_by_mindspore(tmp_path):
    cfg = ParallelConfig(mode=SEMI, model_parallel=4, pipeline_stage=2, micro_batch_num=4, optimizer_shard=True)
    kwargs = context_kwargs(cfg, 8, str(tmp_path / "rank_0.ckpt"))
    try:
        ms.set_auto_parallel_context(**kwargs)
        assert ms.get_auto_parallel_context("full_batch") is True
        assert ms.get_auto_parallel_context("pipeline_stages") == 2
        assert ms.get_auto_parallel_context("strategy_ckpt_config")["save_file"] == str(tmp_path / "rank_0.ckpt")
    finally:
        ms.reset_auto_parallel_context()
    assert context_kwargs(ParallelConfig(mode="auto_parallel"), 1)["search_mode"] == "sharding_propagation"


@pytest.mark.parametrize("train, message", [
    (TrainConfig(accumulation_steps=2), "accumulation_steps=2 is not supported"),
    (TrainConfig(ema_decay=0.999), "ema_decay=0.999 is not supported"),
])
def test_trainer_options_that_need_whole_weights(train, message):
    with pytest.raises(UserError, match=message):
        check_trainer_support(ParallelConfig(mode=SEMI), train)
    check_trainer_support(ParallelConfig(mode="data_parallel"), train)


def test_each_rank_resumes_its_own_slice(tmp_path):
    path = str(tmp_path / "checkpoints" / "rank_0" / "step_00000010.ckpt")
    assert own_slice(path, 5) == str(tmp_path / "checkpoints" / "rank_5" / "step_00000010.ckpt")
    assert rank_dir("run/checkpoints", 2) == os.path.join("run/checkpoints", "rank_2")
    with pytest.raises(UserError, match="pass --resume auto or a checkpoints/rank_<r>/step_<N>.ckpt"):
        own_slice(str(tmp_path / "checkpoints" / "step_00000010.ckpt"), 1)


def test_eager_collectives_switch_the_context_and_agree(monkeypatch):
    seen = []

    class FakeAllReduce:  # a 4-rank job where the other ranks sent zeros
        def __init__(self, op="sum"):
            self.op = op

        def __call__(self, x):
            seen.append((self.op, ms.get_auto_parallel_context("parallel_mode")))
            return x

    monkeypatch.setattr(ms.ops, "AllReduce", FakeAllReduce)
    ms.set_auto_parallel_context(parallel_mode=SEMI, dataset_strategy="full_batch")
    try:
        assert last_stage_loss(6.0, DistInfo(0, 4, SEMI, pipeline_stages=2)) == 3.0  # 6 / 2 last-stage ranks
        agree_on_step(10, "run/checkpoints/rank_0")
        assert ms.get_auto_parallel_context("parallel_mode") == SEMI and ms.get_auto_parallel_context("full_batch")
    finally:
        ms.reset_auto_parallel_context()
    assert seen == [("sum", "stand_alone"), ("max", "stand_alone")]
    monkeypatch.setattr(distributed, "_eager_all_reduce", lambda values, op="sum": np.array([12.0, -10.0]))
    with pytest.raises(UserError, match=r"slices differ \(steps 10 to 12"):
        agree_on_step(10, "run/checkpoints/rank_0")


def _save_slice(run, rank, step, tensors):
    atomic_save([{"name": name, "data": Tensor(value)} for name, value in tensors.items()],
                os.path.join(rank_dir(str(run / "checkpoints"), rank), f"step_{step:08d}.ckpt"),
                {"epoch": 0, "step": step})


def _save_strategy(run, rank, stage, devices, tensor_maps):
    """One rank's strategy file as MindSpore writes it (protobuf ParallelStrategyMap): its stage and
    the layout of each of its parameters over ``devices`` devices."""
    from mindspore.train import node_strategy_pb2

    strategy = node_strategy_pb2.ParallelStrategyMap(current_stage=stage)
    item = strategy.parallel_strategy_item.add()
    item.node_name, item.parallel_strategys.stage = f"MatMul-op{stage}", stage
    item.parallel_strategys.parallel_strategy.add().dim.extend([devices, 1])
    for name, tensor_map in tensor_maps.items():
        layout = strategy.parallel_layout_item.add()
        layout.param_name = name
        layout.parallel_layouts.field = layout.parallel_layouts.opt_weight_shard_step = 0
        layout.parallel_layouts.opt_weight_shard_size = 0
        layout.parallel_layouts.dev_matrix.add().dim.extend([devices])
        layout.parallel_layouts.tensor_map.add().dim.extend(tensor_map)
        layout.parallel_layouts.param_split_shape.add()
        layout.parallel_layouts.indices_offset.add()
    os.makedirs(run / "strategy", exist_ok=True)
    (run / "strategy" / f"rank_{rank}.ckpt").write_bytes(strategy.SerializeToString())


def test_merge_slices_joins_model_parallel_slices_of_the_newest_common_step(tmp_path):
    run, full, bias = tmp_path / "run", np.arange(12, dtype=np.float32).reshape(4, 3), np.ones(4, np.float32)
    for rank in range(2):  # model_parallel=2: the weight's rows are split over the ranks, the bias replicated
        os.makedirs(rank_dir(str(run / "checkpoints"), rank))
        for step in (5, 10):
            _save_slice(run, rank, step, {"dense.weight": full[2 * rank: 2 * rank + 2] + step, "dense.bias": bias})
        _save_strategy(run, rank, 0, 2, {"dense.weight": [0, -1], "dense.bias": [-1]})
    params, meta = read_checkpoint(merge_slices(str(run), str(tmp_path / "merged.ckpt")))
    np.testing.assert_array_equal(params["dense.weight"].asnumpy(), full + 10)
    assert meta["step"] == 10 and meta["ranks"] == 2
    params, _ = read_checkpoint(merge_slices(str(run), str(tmp_path / "step5.ckpt"), step=5))
    np.testing.assert_array_equal(params["dense.weight"].asnumpy(), full + 5)
    os.remove(os.path.join(rank_dir(str(run / "checkpoints"), 1), "step_00000010.ckpt"))
    with pytest.raises(UserError, match=r"step 10 was not saved by all 2 ranks; steps every rank saved: \[5\]"):
        merge_slices(str(run), str(tmp_path / "x.ckpt"), step=10)
    with pytest.raises(UserError, match="merge_slices is for runs trained with parallel.mode=semi_auto_parallel"):
        merge_slices(str(tmp_path), str(tmp_path / "x.ckpt"))


def test_merge_slices_joins_pipeline_stages(tmp_path):
    run, first, last = tmp_path / "run", np.arange(6, dtype=np.float32).reshape(2, 3), -np.ones((2, 2), np.float32)
    for stage, (name, value) in enumerate((("embed.weight", first), ("head.weight", last))):
        os.makedirs(rank_dir(str(run / "checkpoints"), stage))  # one device per stage; a rank saves its stage only
        _save_slice(run, stage, 3, {name: value})
        _save_strategy(run, stage, stage, 1, {name: [-1, -1]})
    params, _ = read_checkpoint(merge_slices(str(run), str(tmp_path / "merged.ckpt")))
    np.testing.assert_array_equal(params["embed.weight"].asnumpy(), first)
    np.testing.assert_array_equal(params["head.weight"].asnumpy(), last)


@pytest.fixture
def sliced_trainer(tmp_path, monkeypatch):
    """Trainer setup as rank 1 of a 4-rank semi-auto job (the collectives are not initialised)."""
    from ms_suite.engine import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "init_distributed", lambda cfg, strategy_dir: DistInfo(1, 4, SEMI))
    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"),
                      ["model.kwargs.base_width=8", "train.batch_size=64", "parallel.mode=semi_auto_parallel"])
    trainer = trainer_module.Trainer(cfg, str(tmp_path / "run"))
    with contextlib.ExitStack() as trainer._cleanup:  # what fit() holds around _setup
        trainer._setup()
        yield trainer


def test_sliced_setup_reads_the_global_batch_and_saves_per_rank(sliced_trainer, tmp_path):
    from ms_suite.data import steps_per_epoch
    from ms_suite.engine.callbacks import TrainState

    trainer = sliced_trainer
    assert trainer.step.reducer is None and trainer.step.sliced
    assert trainer.global_batch == 64  # not 64 x 4 ranks: every rank reads the same global batch
    assert trainer.steps_per_epoch == steps_per_epoch(trainer.cfg.data, "train", 64, 1)
    assert trainer.ckpt.directory == str(tmp_path / "run" / "checkpoints" / "rank_1")
    assert not trainer._eval_due(trainer.cfg.train.epochs - 1)  # sliced weights: eval the merged checkpoint
    assert not (tmp_path / "run" / "config.yaml").exists()  # rank 1 writes no config / summary

    trainer.ckpt.save(trainer.state_cell, 7, {"epoch": 0, "step": 7, "step_in_epoch": 7})
    trainer.resume = str(tmp_path / "run" / "checkpoints" / "rank_0" / "step_00000007.ckpt")  # rank 0's name
    state = TrainState(epochs=1, steps_per_epoch=trainer.steps_per_epoch)
    trainer._restore(state)
    path, params = trainer._pending_slice  # loaded after the step compiles, when parameters are sliced
    assert path.endswith(os.path.join("rank_1", "step_00000007.ckpt")) and "loss_scale" in params
    assert (state.step, state.step_in_epoch) == (7, 7)
