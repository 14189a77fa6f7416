"""BERT: Hugging Face import parity (safetensors and .bin, every head), sizes, FLOPs and import errors."""
import json
import logging
import os
import re

import mindspore as ms
import numpy as np
import pytest
import torch
import transformers

import ms_suite
from conftest import ROOT
from ms_suite.cli.main import main
from ms_suite.errors import UserError
from ms_suite.models.flops import count_flops, count_params
from ms_suite.models.registry import list_models, model_info

VOCAB = 97
# Two shapes: a standard tiny one and a MiniLM-like odd one (tanh GELU, other LayerNorm epsilon).
SHAPES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "odd": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80,
                hidden_act="gelu_new", layer_norm_eps=1e-7, type_vocab_size=3),
}


def _hf_config(shape: str) -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=40, **SHAPES[shape])


def _save(model: torch.nn.Module, folder, fmt: str) -> str:
    """An HF directory: config.json + model.safetensors (save_pretrained) or pytorch_model.bin."""
    os.makedirs(folder, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        model.config.to_json_file(os.path.join(folder, "config.json"))
        torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "vocab.txt"), "w") as fh:
        fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]))
    return str(folder)


def _inputs():
    """Ids, an attention mask with padding in two rows, and two token types."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (3, 12))
    mask = np.ones((3, 12), np.int64)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    types = np.zeros((3, 12), np.int64)
    types[:, 6:] = 1
    return ids, mask, types


def _close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.fixture(scope="module", params=["tiny", "odd"])
def hf_pretraining(request, tmp_path_factory):
    """(shape, torch BertForPreTraining, {fmt: HF dir})."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(_hf_config(request.param)).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affines, so every tensor matters
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    tmp = tmp_path_factory.mktemp(f"hf_{request.param}")
    return request.param, model, {fmt: _save(model, tmp / fmt, fmt) for fmt in ("safetensors", "bin")}


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_pretraining_and_backbone_outputs_match_transformers(hf_pretraining, fmt):
    _, model, dirs = hf_pretraining
    ids, mask, types = _inputs()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types))
        base = model.bert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                          token_type_ids=torch.tensor(types))
    args = [ms.Tensor(a, ms.int32) for a in (ids, mask, types)]
    net = ms_suite.create_model("bert_pretraining", pretrained=dirs[fmt])
    net.set_train(False)
    mlm, nsp = net(*args)
    _close(mlm.asnumpy(), ref.prediction_logits.numpy())
    _close(nsp.asnumpy(), ref.seq_relationship_logits.numpy())
    backbone = ms_suite.create_model("bert", pretrained=dirs[fmt])
    backbone.set_train(False)
    sequence, pooled = backbone(args[0], attention_mask=args[1], token_type_ids=args[2])
    assert sequence.dtype == ms.float32 and pooled.dtype == ms.float32
    _close(sequence.asnumpy(), base.last_hidden_state.numpy())
    _close(pooled.asnumpy(), base.pooler_output.numpy())


def test_masked_positions_select_mlm_rows(hf_pretraining):
    _, _, dirs = hf_pretraining
    net = ms_suite.create_model("bert_pretraining", pretrained=dirs["safetensors"])
    net.set_train(False)
    args = [ms.Tensor(a, ms.int32) for a in _inputs()]
    positions = np.array([[1, 5], [0, 6], [2, 3]])
    everywhere, _ = net(*args)
    selected, _ = net(*args, ms.Tensor(positions, ms.int32))
    _close(selected.asnumpy(), np.take_along_axis(everywhere.asnumpy(), positions[..., None], axis=1))


def test_backbone_checkpoint_and_defaults(tmp_path):
    """An HF BertModel (unprefixed names) imports; default mask/types equal all-ones/zeros."""
    torch.manual_seed(1)
    model = transformers.BertModel(_hf_config("tiny")).eval()
    folder = _save(model, tmp_path / "base", "safetensors")
    ids = _inputs()[0]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids))
    net = ms_suite.create_model("bert", pretrained=folder)
    net.set_train(False)
    sequence, pooled = net(ms.Tensor(ids, ms.int32))
    _close(sequence.asnumpy(), ref.last_hidden_state.numpy())
    _close(pooled.asnumpy(), ref.pooler_output.numpy())


def _head_logits(name: str, num_classes: int, folder, reference) -> tuple:
    """(logits of zoo model ``name`` imported from ``folder``, the transformers ``reference``'s logits)."""
    ids, mask, types = _inputs()
    with torch.no_grad():
        ref = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                        token_type_ids=torch.tensor(types)).logits.numpy()
    net = ms_suite.create_model(name, num_classes=num_classes, pretrained=folder)
    net.set_train(False)
    return net(*[ms.Tensor(a, ms.int32) for a in (ids, mask, types)]).asnumpy(), ref


def test_sequence_classification_matches_and_new_head_is_logged(tmp_path, caplog):
    torch.manual_seed(2)
    config = _hf_config("tiny")
    config.num_labels = 3
    model = transformers.BertForSequenceClassification(config).eval()
    folder = _save(model, tmp_path / "cls", "bin")
    got, ref = _head_logits("bert_cls", 3, folder, model)
    _close(got, ref)
    with caplog.at_level(logging.WARNING, logger="ms_suite"):
        other = ms_suite.create_model("bert_cls", num_classes=5, pretrained=folder)
    assert other.classifier.weight.shape == (5, 32)
    assert any("classifier.weight" in r.getMessage() for r in caplog.records)


def test_token_classification_matches_transformers(tmp_path):
    """Every token's logits against transformers' BertForTokenClassification (padding rows included)."""
    torch.manual_seed(3)
    config = _hf_config("odd")
    config.num_labels = 5
    model = transformers.BertForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.bias.add_(torch.randn_like(model.classifier.bias))
    folder = _save(model, tmp_path / "tok", "safetensors")
    got, ref = _head_logits("bert_token_cls", 5, folder, model)
    assert got.shape == ref.shape == (3, 12, 5)
    _close(got, ref)


def test_convert_weights_cli_writes_a_self_describing_checkpoint(hf_pretraining, tmp_path, capsys):
    shape, model, dirs = hf_pretraining
    dst = str(tmp_path / "bert.ckpt")
    assert main(["convert-weights", "--from", "hf", "--src", dirs["bin"], "--dst", dst]) == 0
    assert "bert_pretraining" in capsys.readouterr().out
    net = ms_suite.create_model("bert", pretrained=dst)  # shape from the config stored in the checkpoint
    assert net.config.hidden_size == SHAPES[shape]["hidden_size"]
    ids = _inputs()[0]
    with torch.no_grad():
        ref = model.bert(input_ids=torch.tensor(ids)).last_hidden_state.numpy()
    net.set_train(False)
    _close(net(ms.Tensor(ids, ms.int32))[0].asnumpy(), ref)


def test_import_errors_are_one_line(hf_pretraining, tmp_path):
    _, _, dirs = hf_pretraining
    with pytest.raises(UserError, match="use model.name=bert"):
        ms_suite.create_model("bert_tiny", pretrained=dirs["safetensors"])
    with pytest.raises(UserError, match="vocab size 97 in the checkpoint vs 120 in the model"):
        ms_suite.create_model("bert_pretraining", pretrained=dirs["safetensors"], vocab_size=120)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        ms_suite.create_model("bert", pretrained=str(empty))
    (empty / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32,
                                                   "num_attention_heads": 4}))
    with pytest.raises(UserError, match="model.safetensors or pytorch_model.bin"):
        ms_suite.create_model("bert", pretrained=str(empty))
    (empty / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match=re.escape(str(empty / "model.safetensors"))):
        ms_suite.create_model("bert", pretrained=str(empty))
    (empty / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(UserError, match="model_type 'roberta' is not BERT"):
        ms_suite.create_model("bert", pretrained=str(empty))


def test_zoo_names_tasks_and_published_shapes():
    names = {n for n in list_models() if model_info(n).family == "bert"}
    sizes = ["tiny", "mini", "small", "medium", "base", "large"]
    suffixes = {"": "feature-extraction", "_pretraining": "bert-pretraining", "_cls": "text-classification"}
    assert names == ({f"bert{s}" for s in suffixes} | {"bert_token_cls"}
                     | {f"bert_{z}{s}" for z in sizes for s in suffixes})
    assert all(model_info(f"bert_{z}{s}").task == t for z in sizes for s, t in suffixes.items())
    assert model_info("bert_token_cls").task == "token-classification"
    assert "GLUE" in model_info("bert_base_cls").reference and not model_info("bert_base").reference
    reference = transformers.BertModel(transformers.BertConfig(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512))
    assert count_params(ms_suite.create_model("bert_tiny")) == sum(p.numel() for p in reference.parameters())


def test_flops_count_attention_and_tied_decoder():
    net = ms_suite.create_model("bert_tiny_pretraining", vocab_size=100)
    seq, hidden, ffn, layers, vocab = 16, 128, 512, 2, 100
    # Per token: Q/K/V/output projections, FFN, MLM transform and the tied decoder (2 FLOPs per MAC).
    per_token = 2 * (layers * (4 * hidden * hidden + 2 * hidden * ffn) + hidden * hidden + hidden * vocab)
    pooler_and_nsp = 2 * hidden * hidden + 2 * hidden * 2  # on the [CLS] row only
    attention = layers * 2 * 2 * seq * seq * hidden  # QK^T and probs @ V
    assert count_flops(net, (seq,)) == seq * per_token + pooler_and_nsp + attention


def test_forward_backward_every_head():
    ids, mask, types = (ms.Tensor(a, ms.int32) for a in _inputs())
    tiny = dict(vocab_size=VOCAB, num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    for name in ("bert_pretraining", "bert_cls", "bert_token_cls"):
        net = ms_suite.create_model(name, num_classes=3, **tiny)
        net.set_train(True)
        params = net.trainable_params()

        def loss_fn():
            out = net(ids, mask, types)
            return sum(o.astype(ms.float32).square().mean() for o in (out if isinstance(out, tuple) else (out,)))

        loss, grads = ms.value_and_grad(loss_fn, None, params)()
        assert np.isfinite(loss.asnumpy())
        assert all(np.isfinite(g.asnumpy()).all() for g in grads), name


def test_finetune_recipe_checks_the_checkpoint_vocab(hf_pretraining, tmp_path):
    """model.pretrained=<HF dir>: data.vocab must be that checkpoint's vocab.txt."""
    from bert_fixtures import write_classification, write_vocab
    from ms_suite.config import load_config
    from ms_suite.data import dataset_info
    from ms_suite.engine.tasks import get_task

    _, _, dirs = hf_pretraining
    data = write_classification(str(tmp_path / "cls"), "csv", train=8, eval_=4)
    other = write_vocab(str(tmp_path / "vocab.txt"))
    task = get_task("text-classification")
    for vocab, error in ((other, "differs from the checkpoint's"), (dirs["bin"], None)):
        cfg = load_config(os.path.join(ROOT, "configs/bert/bert_tiny_finetune_cls.yaml"), [
            "model.name=bert_cls", f"model.pretrained={dirs['bin']}", f"data.path={data}", f"data.vocab={vocab}",
            "data.seq_len=16"])
        if error:
            with pytest.raises(UserError, match=error):
                task.build_model(cfg, dataset_info(cfg.data))
        else:
            net, classes = task.build_model(cfg, dataset_info(cfg.data))
            assert classes == 2 and net.config.vocab_size == VOCAB


def test_sized_name_takes_activation_and_epsilon_from_the_checkpoint(tmp_path):
    torch.manual_seed(3)
    config = transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=512, hidden_act="gelu_new", layer_norm_eps=1e-6)
    model = transformers.BertModel(config).eval()
    folder = _save(model, tmp_path / "tiny", "safetensors")
    net = ms_suite.create_model("bert_tiny", pretrained=folder)
    assert (net.config.hidden_act, net.config.layer_norm_eps) == ("gelu_new", 1e-6)
    ids = _inputs()[0]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)).last_hidden_state.numpy()
    net.set_train(False)
    _close(net(ms.Tensor(ids, ms.int32))[0].asnumpy(), ref)
