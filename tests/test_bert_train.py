"""BERT end to end through the CLI on CPU: prepare-data, pretraining, fine-tuning, eval and export."""
import json
import math
import os

import numpy as np
import pytest

from bert_fixtures import write_classification, write_corpus, write_tagging, write_vocab
from conftest import ROOT, cli

# End-to-end (trains or runs the CLI in a subprocess); one pytest-xdist worker builds the pretraining run, once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bert_train")]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cache_env):
    """A generated corpus turned into shards, and a 3-epoch BERT-Tiny pretraining run on them."""
    tmp = tmp_path_factory.mktemp("bert_pretrain")
    corpus, vocab = write_corpus(str(tmp / "corpus.txt")), write_vocab(str(tmp / "vocab.txt"))
    cli("prepare-data", "bert", "--input", corpus, "--vocab", vocab, "--seq-len", "32", "--dupe-factor", "3",
        "--eval-fraction", "0.2", "--output", str(tmp / "data"))
    out = tmp / "run"
    cli("train", "-c", "configs/bert/bert_tiny_pretrain.yaml", "--output-dir", str(out),
        "--set", f"data.path={tmp / 'data'}", "train.epochs=3", "data.num_workers=1")
    return tmp, json.loads((out / "summary.json").read_text())


def test_pretraining_lowers_mlm_loss(pretrained):
    tmp, summary = pretrained
    vocab_size = json.loads((tmp / "data" / "bert_data.json").read_text())["vocab_size"]
    metrics = summary["metrics"]
    # An untrained model predicts close to uniformly: loss ln(vocab) = 4.37, accuracy ~1/vocab.
    assert metrics["mlm_loss"] < 0.7 * math.log(vocab_size)
    assert metrics["mlm_accuracy"] > 25 and 0 <= metrics["nsp_accuracy"] <= 100
    assert summary["monitor"] == "mlm_accuracy" and summary["best_metric"] == pytest.approx(metrics["mlm_accuracy"])
    assert os.path.isfile(os.path.join(summary["run_dir"], "checkpoints", "best.ckpt"))
    start = next(line for line in open(os.path.join(summary["run_dir"], "train.log")) if " model " in line)
    assert "model bert_tiny_pretraining, data" in start  # no "(2 classes)": the 2 outputs are next-sentence


def test_finetune_eval_and_export(pretrained, tmp_path):
    tmp, _ = pretrained
    data = write_classification(str(tmp_path / "sentiment"), "jsonl", train=128, eval_=48)
    overrides = [f"data.path={data}", f"data.vocab={tmp / 'data'}", "data.seq_len=16", "data.num_workers=1"]
    out = tmp_path / "run"
    cli("train", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--output-dir", str(out),
        "--set", "train.epochs=4", *overrides)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["accuracy"] >= 90 and summary["metrics"]["f1"] >= 90  # chance: 50
    best = str(out / "checkpoints" / "best.ckpt")
    proc = cli("eval", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--checkpoint", best, "--set", *overrides)
    accuracy = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("accuracy")))
    assert accuracy == pytest.approx(summary["best_metric"], abs=1e-3)
    cli("export", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--checkpoint", best,
        "--output", str(tmp_path / "cls.mindir"), "--set", *overrides)
    import mindspore as ms

    graph = ms.load(str(tmp_path / "cls.mindir"))
    logits = ms.nn.GraphCell(graph)(*(ms.Tensor(np.ones((1, 16), np.int32)) for _ in range(3)))
    assert logits.shape == (1, 2)


def test_token_classification(pretrained, tmp_path):
    tmp, _ = pretrained
    out = tmp_path / "run"
    cli("train", "-c", "configs/bert/bert_tiny_token_cls.yaml", "--output-dir", str(out), "--set",
        f"data.path={write_tagging(str(tmp_path / 'tags'))}", f"data.vocab={tmp / 'data'}", "data.seq_len=16",
        "train.epochs=3", "data.num_workers=1")
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["accuracy"] >= 90 and metrics["f1"] >= 80  # 4 tags; always "O" would score ~60%


def test_finetune_starts_from_the_pretraining_checkpoint(pretrained, tmp_path):
    """model.pretrained=<pretraining run> loads the encoder; the new classifier is initialised fresh."""
    import mindspore as ms

    from ms_suite.config import load_config
    from ms_suite.data import dataset_info
    from ms_suite.engine.tasks import get_task

    tmp, summary = pretrained
    best = os.path.join(summary["run_dir"], "checkpoints", "best.ckpt")
    data = write_classification(str(tmp_path / "sentiment"), "csv", train=8, eval_=4)
    cfg = load_config(os.path.join(ROOT, "configs/bert/bert_tiny_finetune_cls.yaml"),
                      [f"data.path={data}", f"data.vocab={tmp / 'data' / 'vocab.txt'}", f"model.pretrained={best}"])
    net, classes = get_task("text-classification").build_model(cfg, dataset_info(cfg.data))
    saved = ms.load_checkpoint(best)
    name = "bert.encoder.layer.1.output.dense.weight"
    assert classes == 2 and np.array_equal(net.parameters_dict()[name].asnumpy(), saved[name].asnumpy())


def test_bad_recipes_are_one_line_errors(pretrained, tmp_path):
    tmp, _ = pretrained
    proc = cli("train", "-c", "configs/bert/bert_tiny_pretrain.yaml", "--output-dir",
               str(tmp_path / "x"), "--set", f"data.path={tmp / 'data'}", "model.kwargs.max_position_embeddings=16",
               check=False)
    assert proc.returncode == 2 and "exceeds the model's max_position_embeddings 16" in proc.stderr
    data = write_classification(str(tmp_path / "cls"), "csv", train=8, eval_=4)
    proc = cli("train", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--output-dir", str(tmp_path / "y"),
               "--set", f"data.path={data}", f"data.vocab={tmp / 'vocab.txt'}", "model.kwargs.vocab_size=20",
               check=False)
    assert proc.returncode == 2 and "vocab mismatch" in proc.stderr


@pytest.mark.slow
def test_token_classification_recipe_learns_sparse_tags(tmp_path):
    """Realistic tags: one tagged word in 16 (~6% non-O). The recipe's defaults must learn them
    rather than collapse to always "O" (accuracy ~94%, macro F1 ~32% over O/SUBJ/OBJ)."""
    from bert_fixtures import write_sparse_tagging

    out = tmp_path / "run"
    cli("train", "-c", "configs/bert/bert_tiny_token_cls.yaml", "--output-dir", str(out), "--set",
        f"data.path={write_sparse_tagging(str(tmp_path / 'tags'))}", f"data.vocab={write_vocab(str(tmp_path / 'v.txt'))}",
        "data.seq_len=24", "data.num_workers=1")
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["f1"] >= 90 and metrics["accuracy"] >= 98
