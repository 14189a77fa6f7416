"""Raw text -> BERT pretraining MindRecord shards (masked LM + next sentence), as in Google's
``create_pretraining_data.py``.

Input: UTF-8 text files; documents are separated by blank lines and split into sentences at
line breaks and sentence-ending punctuation. Each document yields examples of up to ``seq_len``
tokens: segment A is a run of sentences, B is either the true continuation or (half the time,
label 1) a run from another document. Then ``mlm_probability`` of the tokens (at most
``max_predictions``) are chosen for prediction: 80% become [MASK], 10% a random token, 10% stay.
A held-out fraction of the documents becomes the eval split. Everything is seeded: the same
inputs and options give the same shards.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import time
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ms_suite.data.text import DATA_META, WordPieceTokenizer, pad_inputs, truncate_pair
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclasses.dataclass
class PretrainingOptions:
    seq_len: int = 128
    max_predictions: Optional[int] = None  # null: ceil(seq_len * mlm_probability)
    mlm_probability: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    eval_fraction: float = 0.05
    num_shards: int = 1
    seed: int = 12345

    def check(self) -> None:
        if self.seq_len < 8:
            raise UserError(f"--seq-len {self.seq_len} is too short; use at least 8")
        if not 0 < self.mlm_probability < 1:
            raise UserError(f"--mlm-probability {self.mlm_probability} must be between 0 and 1")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"--eval-fraction {self.eval_fraction} must be in [0, 1)")
        if self.dupe_factor < 1 or self.num_shards < 1:
            raise UserError("--dupe-factor and --num-shards must be at least 1")

    @property
    def predictions(self) -> int:
        return self.max_predictions or math.ceil(self.seq_len * self.mlm_probability)


Document = List[List[int]]  # sentences of token ids


def read_documents(paths: Sequence[str], tokenizer: WordPieceTokenizer) -> List[Document]:
    """Tokenized documents (blank-line separated) from ``paths``, with progress in the log."""
    documents: List[Document] = []
    start, lines_done = time.perf_counter(), 0
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"--input {path} not found")
        current: Document = []
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    lines_done += 1
                    if not line.strip():
                        if current:
                            documents.append(current)
                        current = []
                        continue
                    current.extend(ids for s in _SENTENCE_END.split(line.strip()) if (ids := tokenizer.encode(s)))
                    if lines_done % 10000 == 0:
                        log.info("tokenized %d lines (%d documents) in %.0f s", lines_done, len(documents),
                                 time.perf_counter() - start)
        except UnicodeDecodeError as exc:
            raise UserError(f"--input {path} is not UTF-8 text ({exc})") from None
        if current:
            documents.append(current)
    if not documents:
        raise UserError(f"--input {', '.join(paths)} holds no text")
    return documents


def _chunks(document: Document, target: int) -> Iterable[List[List[int]]]:
    """Runs of whole sentences reaching ``target`` tokens (the document's last run may be shorter)."""
    chunk: List[List[int]] = []
    length = 0
    for i, sentence in enumerate(document):
        chunk.append(sentence)
        length += len(sentence)
        if i == len(document) - 1 or length >= target:
            yield chunk
            chunk, length = [], 0


def create_instances(documents: List[Document], index: int, opts: PretrainingOptions,
                     vocab_ids: List[int], tokenizer: WordPieceTokenizer, rng: random.Random) -> List[dict]:
    """Examples from ``documents[index]`` (Google's algorithm: A+B pairs, then masking)."""
    max_tokens = opts.seq_len - 3
    target = max_tokens if rng.random() >= opts.short_seq_prob else rng.randint(2, max_tokens)
    document, examples = documents[index], []
    for chunk in _chunks(document, target):
        split = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        a = [t for s in chunk[:split] for t in s]
        is_random = len(chunk) == 1 or rng.random() < 0.5
        if is_random and len(documents) > 1:
            b = _random_continuation(documents, index, max_tokens - len(a), rng)
        else:
            is_random = False
            b = [t for s in chunk[split:] for t in s]
        if not a or not b:
            continue
        truncate_pair(a, b, max_tokens)
        examples.append(_masked_example(a, b, int(is_random), opts, vocab_ids, tokenizer, rng))
    return examples


def _random_continuation(documents: List[Document], index: int, length: int, rng: random.Random) -> List[int]:
    other = index
    for _ in range(10):
        other = rng.randrange(len(documents))
        if other != index:
            break
    sentences = documents[other]
    start = rng.randrange(len(sentences))
    tokens: List[int] = []
    for sentence in sentences[start:]:
        tokens.extend(sentence)
        if len(tokens) >= length:
            break
    return tokens


def _masked_example(a: List[int], b: List[int], is_random: int, opts: PretrainingOptions,
                    vocab_ids: List[int], tokenizer: WordPieceTokenizer, rng: random.Random) -> dict:
    cls_id, sep_id, mask_id = (tokenizer.token_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    tokens = [cls_id] + a + [sep_id] + b + [sep_id]
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    candidates = [i for i, t in enumerate(tokens) if t not in (cls_id, sep_id)]
    rng.shuffle(candidates)
    count = min(opts.predictions, max(1, round(len(tokens) * opts.mlm_probability)))
    positions = sorted(candidates[:count])
    labels = [tokens[p] for p in positions]
    for p in positions:
        roll = rng.random()
        if roll < 0.8:
            tokens[p] = mask_id
        elif roll < 0.9:
            tokens[p] = rng.choice(vocab_ids)
    ids, mask, segment_ids = pad_inputs(tokens, segments, opts.seq_len, tokenizer.vocab.get("[PAD]", 0))
    pad = opts.predictions - len(positions)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segment_ids,
            "next_sentence_labels": np.int32(is_random),
            "masked_lm_positions": np.asarray(positions + [0] * pad, np.int32),
            "masked_lm_ids": np.asarray(labels + [0] * pad, np.int32),
            "masked_lm_weights": np.asarray([1.0] * len(positions) + [0.0] * pad, np.float32)}


def _schema(opts: PretrainingOptions) -> Dict[str, dict]:
    seq, preds = [opts.seq_len], [opts.predictions]
    return {"input_ids": {"type": "int32", "shape": seq}, "input_mask": {"type": "int32", "shape": seq},
            "segment_ids": {"type": "int32", "shape": seq}, "next_sentence_labels": {"type": "int32"},
            "masked_lm_positions": {"type": "int32", "shape": preds},
            "masked_lm_ids": {"type": "int32", "shape": preds},
            "masked_lm_weights": {"type": "float32", "shape": preds}}


def _write(path: str, examples: List[dict], opts: PretrainingOptions) -> None:
    from mindspore.mindrecord import FileWriter

    shards = max(1, min(opts.num_shards, len(examples)))
    writer = FileWriter(path, shard_num=shards, overwrite=True)
    writer.add_schema(_schema(opts), "bert pretraining: masked LM + next sentence")
    for start in range(0, len(examples), 1000):
        writer.write_raw_data(examples[start:start + 1000])
    writer.commit()


def _split_documents(documents: List[Document], fraction: float, seed: int) -> Dict[str, List[Document]]:
    order = np.random.RandomState(seed).permutation(len(documents))
    held = min(len(documents) - 1, max(1, round(len(documents) * fraction))) if fraction > 0 else 0
    if held == 0 and fraction > 0:
        raise UserError("--eval-fraction needs at least 2 documents (separate documents with a blank line)")
    eval_ids = set(order[:held].tolist())
    return {"train": [d for i, d in enumerate(documents) if i not in eval_ids],
            "eval": [d for i, d in enumerate(documents) if i in eval_ids]}


def create_pretraining_data(inputs: Sequence[str], tokenizer: WordPieceTokenizer, output_dir: str,
                            opts: PretrainingOptions) -> Dict[str, object]:
    """Write ``train.mindrecord*``, ``eval.mindrecord*``, ``bert_data.json`` and a copy of the vocab
into ``output_dir``; returns the metadata written to bert_data.json."""
    opts.check()
    start = time.perf_counter()
    documents = read_documents(inputs, tokenizer)
    os.makedirs(output_dir, exist_ok=True)
    specials = {tokenizer.token_id(t) for t in tokenizer.specials}
    vocab_ids = sorted(set(tokenizer.vocab.values()) - specials)
    rng = random.Random(opts.seed)
    counts = {}
    for split, docs in _split_documents(documents, opts.eval_fraction, opts.seed).items():
        if not docs:
            continue
        examples = [example for _ in range(opts.dupe_factor if split == "train" else 1)
                    for index in range(len(docs))
                    for example in create_instances(docs, index, opts, vocab_ids, tokenizer, rng)]
        rng.shuffle(examples)
        if not examples:
            raise UserError(f"no {split} examples: the documents are too short (each needs 2+ tokens)")
        _write(os.path.join(output_dir, f"{split}.mindrecord"), examples, opts)
        counts[split] = len(examples)
    vocab_copy = os.path.join(output_dir, "vocab.txt")  # the shards' ids are only valid with this vocab
    if os.path.abspath(tokenizer.vocab_file) != os.path.abspath(vocab_copy):
        shutil.copyfile(tokenizer.vocab_file, vocab_copy)
    meta = {"vocab_file": os.path.abspath(vocab_copy), "vocab_size": len(tokenizer),
            "lower_case": tokenizer.lower_case, "documents": len(documents), "examples": counts,
            **dataclasses.asdict(opts), "max_predictions": opts.predictions}
    with open(os.path.join(output_dir, DATA_META), "w") as fh:
        json.dump(meta, fh, indent=2)
    log.info("wrote %s to %s in %.1f s", counts, output_dir, time.perf_counter() - start)
    return meta
