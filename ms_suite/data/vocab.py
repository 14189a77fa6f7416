"""Build a BERT WordPiece vocabulary from raw text with Hugging Face ``tokenizers``.

The output folder holds ``vocab.txt`` and a ``tokenizer_config.json`` naming the casing, which is
what ``data.vocab`` and ``prepare-data bert --vocab`` read.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Sequence

from ms_suite.data.text import SPECIAL_TOKENS
from ms_suite.errors import UserError


def build_wordpiece_vocab(inputs: Sequence[str], output: str, vocab_size: int = 30522, min_frequency: int = 2,
                          lower_case: bool = True) -> Dict[str, object]:
    """Train a WordPiece vocabulary of at most ``vocab_size`` tokens (special tokens first) on the
    UTF-8 text files ``inputs``; write it to ``output/vocab.txt``. Returns what was written."""
    from tokenizers import BertWordPieceTokenizer

    missing = [path for path in inputs if not os.path.isfile(path)]
    if missing:
        raise UserError(f"--input {missing[0]}: no such file; pass UTF-8 text files")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size {vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special tokens")
    tokenizer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
                                       lowercase=lower_case)
    tokenizer.train(list(inputs), vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                    special_tokens=list(SPECIAL_TOKENS), wordpieces_prefix="##")
    os.makedirs(output, exist_ok=True)
    vocab_file = tokenizer.save_model(output)[0]
    with open(os.path.join(output, "tokenizer_config.json"), "w") as fh:
        json.dump({"do_lower_case": lower_case, "tokenizer_class": "BertTokenizer"}, fh, indent=2)
    return {"vocab_file": vocab_file, "vocab_size": tokenizer.get_vocab_size(), "lower_case": lower_case}
