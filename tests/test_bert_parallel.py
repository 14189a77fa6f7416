"""Model/pipeline-parallel configuration: layout validation, CPU refusal, the BERT layout itself, and
the one-line error when eval/export is pointed at a semi-auto recipe (sliced checkpoints)."""
import os

import pytest

import ms_suite
from conftest import ROOT, cli
from ms_suite.config import load_config
from ms_suite.config.schema import ParallelConfig
from ms_suite.errors import UserError
from ms_suite.runtime.auto_parallel import ModelShape, apply_layout, check_device, check_layout, pipeline_loss

BASE = ModelShape(num_layers=12, num_heads=12, hidden_size=768, intermediate_size=3072)
LARGE = ModelShape(num_layers=24, num_heads=16, hidden_size=1024, intermediate_size=4096)


def _semi(**kwargs) -> ParallelConfig:
    return ParallelConfig(mode="semi_auto_parallel", **kwargs)


@pytest.mark.parametrize("devices, layout", [
    (8, dict(data_parallel=2, model_parallel=4)),
    (8, dict(model_parallel=4, pipeline_stage=2, micro_batch_num=4)),  # configs/bert/bert_large_pretrain.yaml
    (16, dict(data_parallel=2, model_parallel=4, pipeline_stage=2, micro_batch_num=8)),
    (1, {}),
])
def test_good_layouts(devices, layout):
    check_layout(_semi(**layout), devices, LARGE, batch_size=64)


@pytest.mark.parametrize("devices, layout, shape, message", [
    (8, dict(data_parallel=2, model_parallel=2), BASE, "= 4 but 8 device"),
    (8, dict(model_parallel=8), BASE, "does not divide the model's num_attention_heads 12"),
    (4, dict(model_parallel=4), ModelShape(2, 4, 130, 512), "does not divide the model's hidden_size 130"),
    (8, dict(model_parallel=2, pipeline_stage=4, micro_batch_num=4), ModelShape(2, 2, 128, 512),
     "pipeline_stage=4 exceeds the model's 2 layers"),
    (8, dict(model_parallel=4, pipeline_stage=2, micro_batch_num=1), LARGE, "micro_batch_num=1 is below"),
    (8, dict(model_parallel=4, pipeline_stage=2, micro_batch_num=3), LARGE, "batch_size=64 is not divisible"),
    (6, dict(data_parallel=3, model_parallel=2), LARGE, "micro-batches of 64 samples, not divisible by parallel."
                                                        "data_parallel=3"),
    (16, dict(data_parallel=4, model_parallel=2, pipeline_stage=2, micro_batch_num=32), LARGE,
     "micro-batches of 2 samples, not divisible by parallel.data_parallel=4; .* a multiple of 128"),
])
def test_bad_layouts_name_the_problem(devices, layout, shape, message):
    with pytest.raises(UserError, match=message):
        check_layout(_semi(**layout), devices, shape, batch_size=64)


def test_model_parallel_needs_semi_auto_mode_and_an_accelerator():
    with pytest.raises(UserError, match="need parallel.mode=semi_auto_parallel"):
        check_device(ParallelConfig(mode="data_parallel", model_parallel=2), "GPU")
    with pytest.raises(UserError, match="needs Ascend or GPU: MindSpore refuses semi-auto"):
        check_device(_semi(model_parallel=2), "CPU")
    check_device(_semi(model_parallel=2), "Ascend")
    check_device(ParallelConfig(mode="data_parallel"), "CPU")


@pytest.mark.slow
def test_large_recipe_on_cpu_is_a_one_line_error(tmp_path):
    cfg = load_config(os.path.join(ROOT, "configs/bert/bert_large_pretrain.yaml"))
    assert (cfg.parallel.model_parallel, cfg.parallel.pipeline_stage, cfg.parallel.recompute) == (4, 2, True)
    proc = cli("train", "-c", "configs/bert/bert_large_pretrain.yaml", "--output-dir", str(tmp_path / "run"),
               "--set", "runtime.device=CPU", f"data.path={tmp_path}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: parallel.mode=semi_auto_parallel")


def test_bert_layout_sets_strategies_stages_and_recompute():
    from ms_suite.engine.tasks.bert import PretrainingLoss
    from ms_suite.models import model_info

    net = ms_suite.create_model("bert_tiny_pretraining", vocab_size=50, num_hidden_layers=4)
    cfg = _semi(data_parallel=2, model_parallel=2, pipeline_stage=2, micro_batch_num=2, recompute=True)
    layout = model_info("bert_tiny_pretraining").parallel_layout(net)
    first, layers, last = layout.first, layout.layers, layout.last
    stages = apply_layout(cfg, layout)
    assert stages == [0, 0, 1, 1]
    assert [c.pipeline_stage for c in first] == [0] and all(c.pipeline_stage == 1 for c in last)
    assert all(layer._has_config_recompute for layer in layers)  # noqa: SLF001 (MindSpore's flag)
    attention = net.bert.encoder.layer[0].attention
    assert attention.self.query.matmul.in_strategy == ((2, 1), (2, 1))  # column parallel
    assert attention.output.dense.matmul.in_strategy == ((2, 2), (1, 2))  # row parallel
    assert attention.self.scores_matmul.in_strategy == ((2, 2, 1, 1), (2, 2, 1, 1))  # split by heads
    assert type(pipeline_loss(PretrainingLoss(net), cfg)).__name__ == "Pipeline"


def test_semi_auto_layout_checks_then_lays_out_the_model(monkeypatch):
    """On an accelerator, under the context init_distributed sets, the BERT task validates the layout
    and applies it; the trainer then runs the sliced graph."""
    import mindspore as ms
    import mindspore.communication as comm

    from ms_suite.engine.tasks.bert import lay_out_model

    cfg = load_config(os.path.join(ROOT, "configs/bert/bert_large_pretrain.yaml"))  # data 1 x model 4 x pipe 2
    monkeypatch.setattr(ms, "get_context", lambda key: "Ascend")
    monkeypatch.setattr(comm, "get_group_size", lambda: 8)
    ms.set_auto_parallel_context(parallel_mode="semi_auto_parallel")
    try:
        for shape, message in ((dict(), "does not divide the model's num_attention_heads 2"),
                               (dict(num_attention_heads=4, num_hidden_layers=1), "pipeline_stage=2 exceeds")):
            with pytest.raises(UserError, match=message):
                lay_out_model(ms_suite.create_model("bert_tiny_pretraining", vocab_size=50, **shape), cfg)
        net = ms_suite.create_model("bert_tiny_pretraining", vocab_size=50, num_attention_heads=4)
        lay_out_model(net, cfg)
    finally:
        ms.reset_auto_parallel_context()
    layers = net.bert.encoder.layer
    assert [layer.pipeline_stage for layer in layers] == [0, 1]
    assert layers[0].attention.self.query.matmul.in_strategy == ((1, 1), (4, 1))


@pytest.mark.slow
def test_eval_of_a_sliced_recipe_names_the_merge(tmp_path):
    proc = cli("eval", "-c", "configs/bert/bert_large_pretrain.yaml", "--checkpoint", str(tmp_path / "step_1.ckpt"),
               "--set", "runtime.device=CPU", f"data.path={tmp_path}", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: parallel.mode=semi_auto_parallel: training wrote one checkpoint slice per rank")
    assert "merge_slices(run_dir, output)" in last and "--set parallel.mode=standalone" in last
