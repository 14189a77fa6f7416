"""Checkpoints carry the model configuration they were trained with: eval, export and --resume
rebuild the network from the checkpoint alone (no data, no pretrained folder)."""
import json
import os
import shutil

import mindspore as ms
import numpy as np
import pytest

from bert_fixtures import vocab_words, write_classification
from conftest import TINY, cli

# One pytest-xdist worker builds the run from a moved Hugging Face folder, once.
pytestmark = pytest.mark.xdist_group("model_config")

# MiniLM-style: not any bert_<size> shape, a tanh GELU and another LayerNorm epsilon.
ODD = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80,
           hidden_act="gelu_new", layer_norm_eps=1e-7)


def hf_folder(folder) -> str:
    """A Hugging Face BERT directory of the odd shape whose vocab.txt is the fixtures' vocabulary."""
    import torch
    import transformers

    torch.manual_seed(0)
    words = vocab_words()
    model = transformers.BertModel(transformers.BertConfig(vocab_size=len(words), max_position_embeddings=64, **ODD))
    model.save_pretrained(folder)
    with open(os.path.join(folder, "vocab.txt"), "w") as fh:
        fh.write("\n".join(words) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, cache_env):
    """bert_cls fine-tuned from the odd HF folder, which is then moved away."""
    tmp = tmp_path_factory.mktemp("odd_bert")
    hf = hf_folder(tmp / "minilm")
    data = write_classification(str(tmp / "sentiment"), "csv", train=64, eval_=32)
    run = tmp / "run"
    cli("train", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--output-dir", str(run), "--set",
        "model.name=bert_cls", f"model.pretrained={hf}", f"data.vocab={hf}", f"data.path={data}", "data.seq_len=16",
        "train.epochs=2", "data.num_workers=1")
    shutil.move(hf, str(tmp / "moved"))  # from here on, only the run directory is left
    return run, json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_eval_with_the_run_config_rebuilds_the_trained_shape(odd_run):
    run, summary = odd_run
    best = str(run / "checkpoints" / "best.ckpt")
    proc = cli("eval", "-c", str(run / "config.yaml"), "--checkpoint", best, "--set", "data.vocab=" + str(
        run.parent / "moved"))
    accuracy = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("accuracy")))
    assert accuracy == pytest.approx(summary["best_metric"], abs=1e-3)


@pytest.mark.slow
def test_export_needs_neither_data_nor_the_pretrained_folder(odd_run, tmp_path):
    """The recipe's defaults (bert_tiny_cls, data/text_cls) are overridden by the checkpoint's own config."""
    from model_zoo.bert import BertConfig, BertForSequenceClassification
    from ms_suite.checkpoint import model_weights, read_checkpoint

    run, _ = odd_run
    best = str(run / "checkpoints" / "best.ckpt")
    out = tmp_path / "odd.mindir"
    args = ("export", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--checkpoint", best, "--output", str(out),
            "--set", "data.path=nowhere", "data.vocab=nowhere", "data.seq_len=16")
    # Sizing the network needs no data; verifying the file runs eval samples, so without data it is skipped.
    refused = cli(*args, check=False)
    error = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and error.startswith("error: verification runs eval samples"), refused.stderr
    assert "data.path 'nowhere'" in error and "--no-verify" in error and refused.stderr.count("error:") == 1
    cli(*args, "--no-verify")
    ids = np.random.default_rng(0).integers(5, len(vocab_words()), (1, 16)).astype(np.int32)
    inputs = (ids, np.ones_like(ids), np.zeros_like(ids))
    exported = ms.nn.GraphCell(ms.load(str(out)))(*map(ms.Tensor, inputs)).asnumpy()
    # Reference: the odd shape written out by hand (not read from the checkpoint) with the trained weights.
    reference = BertForSequenceClassification(BertConfig(vocab_size=len(vocab_words()), max_position_embeddings=64,
                                                         **ODD), 2)
    ms.load_param_into_net(reference, model_weights(read_checkpoint(best)[0]))
    reference.set_train(False)
    expected = reference(*map(ms.Tensor, inputs)).asnumpy()
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_resume_rebuilds_from_the_checkpoint_without_the_pretrained_folder(odd_run, tmp_path):
    run, summary = odd_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cli("train", "-c", str(copy / "config.yaml"), "--output-dir", str(copy), "--resume", "auto", "--set",
        "train.epochs=3", "data.vocab=" + str(run.parent / "moved"))
    resumed = json.loads((copy / "summary.json").read_text())
    assert resumed["epochs"] == 3 and resumed["steps"] == summary["steps"] * 3 // 2


def test_checkpoint_of_another_shape_names_the_shape_keys(tmp_path, cache_env):
    """A checkpoint without a stored configuration that does not fit: the error names model.kwargs,
    not model.num_classes, when the body differs."""
    from ms_suite.errors import UserError
    from ms_suite.models import create_model
    from ms_suite.models.weights import load_pretrained

    ckpt = str(tmp_path / "wide.ckpt")
    ms.save_checkpoint(create_model("resnet18_cifar", num_classes=10, base_width=16), ckpt)
    with pytest.raises(UserError, match=r"check model.name and model.kwargs \(the network's shape"):
        load_pretrained(create_model("resnet18_cifar", num_classes=10, base_width=8), ckpt, allow_new_head=False)
    with pytest.raises(UserError, match=r"fc.weight .*; check model.num_classes against"):
        load_pretrained(create_model("resnet18_cifar", num_classes=3, base_width=16), ckpt, allow_new_head=False)


def test_quickstart_checkpoint_exports_with_another_recipe_width(tiny_run, tmp_path):
    """The quickstart run used base_width=8 (TINY); the checkpoint says so, the recipe does not."""
    out, _ = tiny_run
    assert TINY[0] == "model.kwargs.base_width=8"
    cli("export", "-c", "configs/quickstart.yaml", "--checkpoint", str(out / "checkpoints" / "best.ckpt"),
        "--output", str(tmp_path / "q.mindir"))
    graph = ms.nn.GraphCell(ms.load(str(tmp_path / "q.mindir")))
    assert graph(ms.Tensor(np.zeros((1, 1, 8, 8), np.float32))).shape == (1, 10)
