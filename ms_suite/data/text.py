"""Text data for BERT: the WordPiece tokenizer, labelled CSV/TSV/JSONL files, and the two sources
``text_classification`` and ``bert_pretraining`` that plug into :func:`ms_suite.data.build_dataset`.

Tokenization is MindSpore's own ``mindspore.dataset.text.BertTokenizer`` (run eagerly: CJK
characters, punctuation and WordPiece), wrapped so its ids equal Hugging Face's ``BertTokenizer``
for the same ``vocab.txt``. Three steps happen before it, as HF does them: cleaning (control
characters dropped, whitespace unified), splitting around special tokens such as ``[MASK]``
(MindSpore's ``preserve_unused_token`` garbles the text around them when lower-casing), and
lower-casing with accent stripping by canonical decomposition (MindSpore's uses NFKD, which also
rewrites compatibility characters such as "…" into "...").
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import os
import re
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ms_suite.config.schema import DataConfig
from ms_suite.data.source import SPLITS
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CLASSIFICATION_COLUMNS = ["input_ids", "input_mask", "segment_ids", "label"]
# The MindSpore model zoo's BERT pretraining columns, so its MindRecord files load too.
PRETRAINING_COLUMNS = ["input_ids", "input_mask", "segment_ids", "next_sentence_labels",
                       "masked_lm_positions", "masked_lm_ids", "masked_lm_weights"]
DATA_META = "bert_data.json"  # written by `prepare-data bert` next to the shards
IGNORE_LABEL = -100  # token classification: positions without a label ([CLS], [SEP], later word pieces)
DEFAULT_SEQ_LEN = 128
_EXTENSIONS = (".csv", ".tsv", ".jsonl")
SPLIT_FILES = {"train": ("train",), "eval": ("eval", "dev", "val", "validation")}


# --------------------------------------------------------------------------- tokenizer


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def clean_text(text: str) -> str:
    """HF's BERT text cleaning: drop NUL, U+FFFD and control characters; any whitespace -> space."""
    out = []
    for char in text:
        if char in "\x00\ufffd" or _is_control(char):
            continue
        out.append(" " if char.isspace() or unicodedata.category(char) == "Zs" else char)
    return "".join(out)


def lower_and_strip_accents(text: str) -> str:
    """HF's uncased normalisation: lower-case, canonical decomposition, drop combining marks."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def resolve_vocab(path: str, what: str = "data.vocab") -> str:
    """``path`` (a vocab.txt, or a folder holding one) as an existing file."""
    path = os.path.expanduser(path)
    file = os.path.join(path, "vocab.txt") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise UserError(f"{what}: {file} not found; point it at a WordPiece vocab.txt "
                        "(e.g. the one in the Hugging Face checkpoint folder)")
    return file


def default_lower_case(vocab_file: str) -> bool:
    """``do_lower_case`` from a tokenizer_config.json beside the vocab, else True (HF's default)."""
    config = os.path.join(os.path.dirname(vocab_file), "tokenizer_config.json")
    if os.path.isfile(config):
        try:
            with open(config) as fh:
                return bool(json.load(fh).get("do_lower_case", True))
        except ValueError:
            log.warning("%s is not valid JSON; lower-casing text", config)
    return True


class WordPieceTokenizer:
    """BERT WordPiece over ``vocab_file`` with optional lower-casing (which also strips accents)."""

    def __init__(self, vocab_file: str, lower_case: Optional[bool] = None):
        import mindspore.dataset.text as text

        self.vocab_file = resolve_vocab(vocab_file)
        self.lower_case = default_lower_case(self.vocab_file) if lower_case is None else lower_case
        self.vocab = read_vocab(self.vocab_file)
        missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in self.vocab]
        if missing:
            raise UserError(f"{self.vocab_file} lacks {', '.join(missing)}; it is not a BERT vocab.txt")
        self.specials = {t for t in SPECIAL_TOKENS if t in self.vocab}
        self._special_split = re.compile("(" + "|".join(map(re.escape, sorted(self.specials))) + ")")
        self._tokenizer = text.BertTokenizer(
            text.Vocab.from_list(list(self.vocab)), suffix_indicator="##", max_bytes_per_token=100,
            unknown_token="[UNK]", lower_case=False, keep_whitespace=False,
            normalization_form=text.NormalizeForm.NONE, preserve_unused_token=False, with_offsets=False)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> List[str]:
        tokens: List[str] = []
        for piece in self._special_split.split(clean_text(text)):
            if piece in self.specials:
                tokens.append(piece)
            elif piece.strip():
                piece = lower_and_strip_accents(piece) if self.lower_case else piece
                tokens.extend(t for t in self._tokenizer(piece).tolist() if t)
        return tokens

    def encode(self, text: str) -> List[int]:
        """Ids of ``text`` without [CLS]/[SEP]."""
        return [self.vocab[t] for t in self.tokenize(text)]

    def token_id(self, token: str) -> int:
        return self.vocab[token]

    def build_inputs(self, ids: List[int], pair: Optional[List[int]], seq_len: int) -> Tuple[np.ndarray, ...]:
        """``[CLS] a [SEP] (b [SEP])`` truncated longest-first and zero-padded to ``seq_len``:
        (input_ids, input_mask, segment_ids) as int32 arrays."""
        ids, pair = list(ids), list(pair) if pair is not None else None
        truncate_pair(ids, pair or [], seq_len - (3 if pair is not None else 2))
        cls_id, sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        tokens = [cls_id] + ids + [sep_id]
        segments = [0] * len(tokens)
        if pair is not None:
            tokens += pair + [sep_id]
            segments += [1] * (len(pair) + 1)
        return pad_inputs(tokens, segments, seq_len, self.vocab.get("[PAD]", 0))


def read_vocab(path: str) -> Dict[str, int]:
    """token -> id, one token per line (HF's rule: a repeated token keeps its last line)."""
    try:
        with open(path, encoding="utf-8") as fh:
            tokens = [line.rstrip("\n") for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read vocab {path}: {exc}") from None
    vocab = {token: index for index, token in enumerate(tokens)}
    if not vocab:
        raise UserError(f"vocab {path} is empty")
    return vocab


def truncate_pair(a: List[int], b: List[int], max_tokens: int) -> None:
    """Pop from the longer list (``b`` on ties) until both fit in ``max_tokens`` (in place)."""
    while len(a) + len(b) > max_tokens:
        (a if len(a) > len(b) else b).pop()


def pad_inputs(tokens: List[int], segments: List[int], seq_len: int, pad_id: int) -> Tuple[np.ndarray, ...]:
    pad = seq_len - len(tokens)
    ids = np.asarray(tokens + [pad_id] * pad, np.int32)
    mask = np.asarray([1] * len(tokens) + [0] * pad, np.int32)
    return ids, mask, np.asarray(segments + [0] * pad, np.int32)


@functools.lru_cache(maxsize=4)
def load_tokenizer(vocab_file: str, lower_case: Optional[bool]) -> WordPieceTokenizer:
    return WordPieceTokenizer(vocab_file, lower_case)


# --------------------------------------------------------------------------- labelled files


def read_rows(path: str) -> List[Dict[str, object]]:
    """Rows of a CSV, TSV (tab-separated, no quoting, as GLUE ships) or JSONL file."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if ext == ".jsonl":
                return [json.loads(line) for line in fh if line.strip()]
            if ext == ".tsv":
                return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}; expected UTF-8 CSV, TSV or JSONL "
                        "with a header (CSV/TSV) or one JSON object per line") from None


def find_split_file(root: str, split: str) -> str:
    for stem in SPLIT_FILES[split]:
        for ext in _EXTENSIONS:
            path = os.path.join(root, stem + ext)
            if os.path.isfile(path):
                return path
    names = " or ".join(f"{s}.csv|tsv|jsonl" for s in SPLIT_FILES[split])
    raise UserError(f"data.path: {root} has no {split} file ({names})")


def label_map(values: Sequence[object]) -> Dict[str, int]:
    """Label text -> class id: integers stay themselves, other labels are numbered in sorted order."""
    texts = sorted({str(v).strip() for v in values})
    if all(re.fullmatch(r"\d+", t) for t in texts):
        return {t: int(t) for t in texts}
    return {t: i for i, t in enumerate(texts)}


@dataclasses.dataclass(frozen=True)
class ClassificationSettings:
    """The data keys that decide how labelled files are tokenized (hashable, for the cache)."""

    vocab: str
    lower_case: Optional[bool]
    seq_len: int
    text_column: str
    text_pair_column: Optional[str]
    label_column: str
    val_split: float
    per_token: bool  # token classification: a list of words and a list of tags per row

    @classmethod
    def from_config(cls, cfg: DataConfig) -> "ClassificationSettings":
        return cls(resolve_vocab(vocab_setting(cfg)), cfg.lower_case, cfg.seq_len or DEFAULT_SEQ_LEN,
                   cfg.text_column, cfg.text_pair_column, cfg.label_column, cfg.val_split,
                   cfg.name == "token_classification")


Rows = List[Tuple[int, Dict[str, object]]]  # (line number in the file, row)


def split_rows(files: Sequence[str], val_split: float) -> Dict[str, Rows]:
    """Rows per split: from the train and eval files, or ``val_split`` of one file held out (fixed seed)."""
    numbered = [list(enumerate(read_rows(f), start=1 if f.endswith(".jsonl") else 2)) for f in files]
    if len(files) == len(SPLITS):
        return dict(zip(SPLITS, numbered))
    rows = numbered[0]
    held = set(np.random.RandomState(0).permutation(len(rows))[:max(1, round(len(rows) * val_split))].tolist())
    return {"train": [r for i, r in enumerate(rows) if i not in held],
            "eval": [r for i, r in enumerate(rows) if i in held]}


def _label_id(labels: Dict[str, int], value: object, path: str, line: int) -> int:
    label = str(value).strip()
    if label not in labels:
        raise UserError(f"{path} row {line}: label {label!r} is not among the training labels {sorted(labels)[:10]}")
    return labels[label]


def _row_labels(row: Dict[str, object], cfg: ClassificationSettings) -> List[object]:
    value = row.get(cfg.label_column, "")
    return list(value) if cfg.per_token and isinstance(value, list) else [value]


def _encode_sequence(row, line, path, cfg, tokenizer, labels, pair_column) -> tuple:
    pair = tokenizer.encode(str(row[pair_column] or "")) if pair_column else None
    encoded = tokenizer.build_inputs(tokenizer.encode(str(row.get(cfg.text_column) or "")), pair, cfg.seq_len)
    return (*encoded, np.int32(_label_id(labels, row.get(cfg.label_column, ""), path, line)))


def _encode_words(row, line, path, cfg, tokenizer, labels, pair_column) -> tuple:
    """Word pieces of each word; the word's tag on its first piece, IGNORE_LABEL elsewhere."""
    words, tags = row.get(cfg.text_column), row.get(cfg.label_column)
    if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
        raise UserError(f"{path} row {line}: {cfg.text_column!r} and {cfg.label_column!r} must be lists of "
                        "equal length (one tag per word)")
    ids: List[int] = []
    targets: List[int] = []
    for word, tag in zip(words, tags):
        pieces = tokenizer.encode(str(word))
        ids += pieces
        targets += [_label_id(labels, tag, path, line)] + [IGNORE_LABEL] * (len(pieces) - 1) if pieces else []
    keep = cfg.seq_len - 2
    label_row = np.full(cfg.seq_len, IGNORE_LABEL, np.int32)
    label_row[1:1 + len(targets[:keep])] = targets[:keep]
    return (*tokenizer.build_inputs(ids[:keep], None, cfg.seq_len), label_row)


def encode_rows(path: str, rows: Rows, cfg: ClassificationSettings, tokenizer: WordPieceTokenizer,
                labels: Dict[str, int]) -> Dict[str, np.ndarray]:
    """Tokenize ``rows`` into the classification columns (per-token labels for token classification)."""
    if not rows:
        raise UserError(f"{path} holds no rows")
    present = set(rows[0][1])
    for column in (cfg.text_column, cfg.label_column):
        if column not in present:
            raise UserError(f"{path} has no column {column!r} (it has {', '.join(map(str, present))}); "
                            f"set data.text_column / data.label_column")
    pair_column = cfg.text_pair_column if cfg.text_pair_column in present and not cfg.per_token else None
    encode = _encode_words if cfg.per_token else _encode_sequence
    encoded = [encode(row, line, path, cfg, tokenizer, labels, pair_column) for line, row in rows]
    return {c: np.stack(values) for c, values in zip(CLASSIFICATION_COLUMNS, zip(*encoded))}


@functools.lru_cache(maxsize=4)
def classification_arrays(files: Tuple[str, ...], stamp: tuple, cfg: ClassificationSettings
                           ) -> Tuple[Dict[str, Dict[str, np.ndarray]], Dict[str, int]]:
    """Both splits tokenized (cached on the files' mtime and size: the trainer builds a dataset
    every epoch)."""
    tokenizer = load_tokenizer(cfg.vocab, cfg.lower_case)
    rows = split_rows(files, cfg.val_split)
    labels = label_map([label for _, row in rows["train"] for label in _row_labels(row, cfg)])
    log.info("tokenizing %s (vocab %s, lower_case %s, seq_len %d)", ", ".join(files), tokenizer.vocab_file,
             tokenizer.lower_case, cfg.seq_len)
    paths = dict(zip(SPLITS, files * len(SPLITS) if len(files) == 1 else files))
    arrays = {s: encode_rows(paths[s], rows[s], cfg, tokenizer, labels) for s in SPLITS}
    return arrays, labels


def vocab_setting(cfg: DataConfig) -> str:
    if not cfg.vocab:
        raise UserError(f"data.name={cfg.name} needs data.vocab: a WordPiece vocab.txt or the Hugging Face "
                        "checkpoint folder that holds it")
    return cfg.vocab


def file_stamp(files: Sequence[str]) -> tuple:
    return tuple((f, os.path.getmtime(f), os.path.getsize(f)) for f in files)


def read_data_meta(root: str) -> Dict[str, object]:
    """What ``prepare-data bert`` recorded (vocab size, seq_len...); empty for other producers."""
    path = os.path.join(root, DATA_META)
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)
