"""BERT text data: tokenizer parity with Hugging Face, labelled files, pretraining shards, and errors."""
import json
import os

import numpy as np
import pytest
import transformers

from bert_fixtures import write_classification, write_corpus, write_tagging, write_vocab
from ms_suite.cli.main import main
from ms_suite.config.schema import DataConfig
from ms_suite.data import build_dataset, dataset_info
from ms_suite.data.text import WordPieceTokenizer
from ms_suite.errors import UserError

TEXTS = [
    "Hello, World! The café's crème brûlée costs $4.50 (really?)",
    "ÉCOLE Ünïcödé naïve façade — «quotes» and “curly” ones…",
    "中文字符混合English words和数字123。",
    "unaffable xyzzyplugh supercalifragilistic antidisestablishment",
    "tabs\tnew\nlines\r\n  and   spaces\u00a0nbsp",
    "control\x00chars\u200bzero\ufffdwidth \x07bell",
    "[CLS] special [SEP] tokens [MASK] inside[MASK]text [UNK] [unused1]",
    "Mixed CASE words like iPhone, McDonald's and U.S.A.",
    "emoji 🙂 and symbols ±×÷ ∑ ∞",
    "",
]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A vocab with accents, CJK, punctuation, WordPieces and both cases."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "cafe", "café", "'", "s",
             "creme", "crème", "brulee", ",", "!", "?", "(", ")", "$", "4", ".", "50", "really", "ecole", "école",
             "naive", "facade", "—", "«", "»", "and", "ones", "中", "文", "字", "符", "混", "合", "english",
             "words", "和", "数", "123", "。", "un", "##aff", "##able", "super", "##cal", "##i", "tabs", "new",
             "lines", "spaces", "control", "chars", "zero", "width", "bell", "special", "tokens", "inside",
             "text", "mixed", "case", "like", "i", "##phone", "mc", "##donald", "u", "a", "emoji", "symbols",
             "Hello", "World", "The", "Mixed", "CASE", "##s", "costs", "[", "]", "unused", "##1", "##ing"]
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("lower", [True, False])
def test_tokenizer_ids_match_transformers(vocab, lower):
    ours = WordPieceTokenizer(vocab, lower_case=lower)
    reference = transformers.BertTokenizer(vocab, do_lower_case=lower)
    for text in TEXTS:
        assert ours.encode(text) == reference(text, add_special_tokens=False)["input_ids"], text


def test_pair_inputs_match_transformers(vocab):
    ours = WordPieceTokenizer(vocab, lower_case=True)
    reference = transformers.BertTokenizer(vocab, do_lower_case=True)
    first, second = TEXTS[0], TEXTS[2]
    expected = reference(first, second, truncation="longest_first", max_length=16, padding="max_length")
    ids, mask, segments = ours.build_inputs(ours.encode(first), ours.encode(second), 16)
    assert ids.tolist() == expected["input_ids"]
    assert mask.tolist() == expected["attention_mask"]
    assert segments.tolist() == expected["token_type_ids"]


def test_lower_case_follows_tokenizer_config(vocab, tmp_path):
    folder = tmp_path / "cased"
    folder.mkdir()
    (folder / "vocab.txt").write_text(open(vocab, encoding="utf-8").read(), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert WordPieceTokenizer(str(folder)).tokenize("Hello World") == ["Hello", "World"]
    assert WordPieceTokenizer(vocab).tokenize("Hello World") == ["hello", "world"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_classification_files(tmp_path, fmt):
    folder = write_classification(str(tmp_path / fmt), fmt, train=10, eval_=6)
    cfg = DataConfig(name="text_classification", path=folder, vocab=write_vocab(str(tmp_path / "v.txt")),
                     seq_len=16, num_workers=1)
    info = dataset_info(cfg)
    assert info.num_classes == 2 and info.input_shape == (16,) and info.num_samples == {"train": 10, "eval": 6}
    batches = list(build_dataset(cfg, "eval", 4).create_tuple_iterator(num_epochs=1, output_numpy=True))
    ids, mask, segments, labels = (np.concatenate(c) for c in zip(*batches))
    assert ids.shape == (6, 16) and ids.dtype == np.int32 and (ids[:, 0] == 2).all()  # [CLS]
    assert (mask.sum(1) == (ids != 0).sum(1)).all() and not segments.any()
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]  # negative < positive, alternating in the fixture


def test_classification_errors(tmp_path):
    folder = write_classification(str(tmp_path / "d"), "csv", train=4, eval_=2)
    vocab = write_vocab(str(tmp_path / "v.txt"))
    base = dict(name="text_classification", path=folder, vocab=vocab)
    with pytest.raises(UserError, match="has no column 'sentence'"):
        dataset_info(DataConfig(**base, text_column="sentence"))
    with pytest.raises(UserError, match="has no column 'y'"):
        dataset_info(DataConfig(**base, label_column="y"))
    with pytest.raises(UserError, match="needs data.vocab"):
        dataset_info(DataConfig(name="text_classification", path=folder))
    with pytest.raises(UserError, match="missing.txt not found"):
        dataset_info(DataConfig(**{**base, "vocab": str(tmp_path / "missing.txt")}))
    with open(os.path.join(folder, "dev.csv"), "a") as fh:
        fh.write("a new kind of label,neutral\n")
    with pytest.raises(UserError, match="dev.csv row 4: label 'neutral' is not among the training labels"):
        dataset_info(DataConfig(**base))
    os.remove(os.path.join(folder, "dev.csv"))
    with pytest.raises(UserError, match="no eval file"):
        dataset_info(DataConfig(**base))
    with open(os.path.join(folder, "dev.csv"), "wb") as fh:
        fh.write(b"text,label\n\xff\xfe broken,1\n")
    with pytest.raises(UserError, match="cannot read .*dev.csv"):
        dataset_info(DataConfig(**base))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert_data")
    corpus, vocab = write_corpus(str(tmp / "corpus.txt")), write_vocab(str(tmp / "vocab.txt"))
    args = ["prepare-data", "bert", "--input", corpus, "--vocab", vocab, "--seq-len", "32",
            "--eval-fraction", "0.25", "--dupe-factor", "2"]
    assert main(args + ["--output", str(tmp / "a")]) == 0
    assert main(args + ["--output", str(tmp / "b")]) == 0
    return tmp


def _records(folder, split="train"):
    from mindspore.mindrecord import FileReader

    reader = FileReader(os.path.join(folder, f"{split}.mindrecord"))
    rows = list(reader.get_next())
    reader.close()
    return rows


def test_pretraining_shards_are_deterministic_and_well_formed(shards):
    rows, again = _records(shards / "a"), _records(shards / "b")
    assert len(rows) == len(again) > 50
    assert all((r["input_ids"] == s["input_ids"]).all() for r, s in zip(rows, again))
    meta = json.loads((shards / "a" / "bert_data.json").read_text())
    assert meta["vocab_size"] == len(open(shards / "vocab.txt").read().split("\n")) - 1
    assert meta["max_predictions"] == 5 and os.path.isfile(shards / "a" / "vocab.txt")
    labels, masked, kept_or_random, predicted = [], 0, 0, 0
    for r in rows:
        ids, weights, positions = r["input_ids"], r["masked_lm_weights"], r["masked_lm_positions"]
        n, count = int(r["input_mask"].sum()), int(weights.sum())
        assert ids[0] == 2 and (ids[:n] == 3).sum() == 2 and not ids[n:].any()  # [CLS] a [SEP] b [SEP] pad
        assert r["segment_ids"][:n].tolist() == sorted(r["segment_ids"][:n].tolist())
        assert 1 <= count <= 5 and (positions[:count] < n).all() and not weights[count:].any()
        assert not np.isin(ids[positions[:count]], [0, 2, 3]).any()  # never [PAD], [CLS] or [SEP]
        masked += int((ids[positions[:count]] == 4).sum())
        kept_or_random += int((ids[positions[:count]] != 4).sum())
        predicted += count
        labels.append(int(r["next_sentence_labels"]))
    assert 0.7 < masked / predicted < 0.9  # 80% [MASK]; the rest random or kept
    assert 0.3 < np.mean(labels) < 0.7  # about half the pairs are random


def test_pretraining_source_and_errors(shards, tmp_path):
    cfg = DataConfig(name="bert_pretraining", path=str(shards / "a"), num_workers=1)
    info = dataset_info(cfg)
    assert info.input_shape == (32,) and info.num_classes == 2 and info.num_samples["eval"] > 0
    batch = next(build_dataset(cfg, "train", 4, seed=1).create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert [b.shape for b in batch] == [(4, 32)] * 3 + [(4,)] + [(4, 5)] * 3
    with pytest.raises(UserError, match="data.seq_len=64 but .* sequences of 32 tokens"):
        dataset_info(DataConfig(name="bert_pretraining", path=str(shards / "a"), seq_len=64))
    with pytest.raises(UserError, match="no train\\*.mindrecord shards"):
        dataset_info(DataConfig(name="bert_pretraining", path=str(tmp_path)))
    assert main(["prepare-data", "bert", "--input", str(tmp_path / "none.txt"), "--vocab",
                 str(shards / "vocab.txt"), "--output", str(tmp_path / "o")]) == 2


def test_sentence_pairs_and_resume_order(shards, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for name in ("train.csv", "eval.csv"):
        (folder / name).write_text("text,text_pair,label\nthe farmer,the cow,yes\nthe boat,the moon,no\n")
    cfg = DataConfig(name="text_classification", path=str(folder), vocab=str(shards / "vocab.txt"), seq_len=8)
    ids, mask, segments, labels = next(build_dataset(cfg, "eval", 2).create_tuple_iterator(
        num_epochs=1, output_numpy=True))
    assert segments[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0] and labels.tolist() == [1, 0]  # no < yes
    pretraining = DataConfig(name="bert_pretraining", path=str(shards / "a"), num_workers=1)

    def batches(skip):
        data = build_dataset(pretraining, "train", 8, seed=3, epoch=1, skip_batches=skip)
        return [b[0] for b in data.create_tuple_iterator(num_epochs=1, output_numpy=True)]

    full, resumed = batches(0), batches(2)
    assert len(resumed) == len(full) - 2 and all((a == b).all() for a, b in zip(full[2:], resumed))


def test_one_labelled_file_is_split(tmp_path):
    folder = write_classification(str(tmp_path / "d"), "tsv", train=20, eval_=2)
    cfg = DataConfig(name="text_classification", path=os.path.join(folder, "train.tsv"), val_split=0.25,
                     vocab=write_vocab(str(tmp_path / "v.txt")))
    assert dataset_info(cfg).num_samples == {"train": 15, "eval": 5}


def test_token_labels_go_to_the_first_word_piece(tmp_path):
    folder = write_tagging(str(tmp_path / "tags"), train=8, eval_=4)
    with open(os.path.join(folder, "dev.jsonl"), "w") as fh:
        fh.write(json.dumps({"tokens": ["The", "farmers", "feeds", "."], "tags": ["O", "SUBJ", "VERB", "O"]}) + "\n")
    cfg = DataConfig(name="token_classification", path=folder, vocab=write_vocab(str(tmp_path / "v.txt")),
                     text_column="tokens", label_column="tags", seq_len=8)
    assert dataset_info(cfg).num_classes == 4  # O, OBJ, SUBJ, VERB
    ids, _, _, labels = next(build_dataset(cfg, "eval", 1).create_tuple_iterator(num_epochs=1, output_numpy=True))
    tokenizer = WordPieceTokenizer(str(tmp_path / "v.txt"))
    assert tokenizer.tokenize("The farmers feeds .") == ["the", "farmer", "##s", "feeds", "."]
    # [CLS] the farmer ##s feeds . [SEP] [PAD]: O=0, SUBJ=2, VERB=3; -100 where there is no label
    assert labels[0].tolist() == [-100, 0, 2, -100, 3, 0, -100, -100]
    with open(os.path.join(folder, "dev.jsonl"), "w") as fh:
        fh.write(json.dumps({"tokens": ["The", "farmers"], "tags": ["O"]}) + "\n")
    with pytest.raises(UserError, match="row 1: 'tokens' and 'tags' must be lists of equal length"):
        dataset_info(cfg)
