"""``prepare-data``: turn raw inputs into training-ready files (``bert``: text -> MindRecord; ``vocab``:
text -> WordPiece vocab.txt)."""
from __future__ import annotations

import argparse

from ms_suite.cli.table import format_mapping


def register(sub: argparse._SubParsersAction) -> None:
    prep = sub.add_parser("prepare-data", help="turn raw inputs into training-ready files")
    kinds = prep.add_subparsers(dest="kind", metavar="KIND", required=True)
    bert = kinds.add_parser("bert", help="raw text -> BERT pretraining MindRecord shards (masked LM + next sentence)",
                            description="Documents are separated by blank lines; sentences by line breaks and "
                                        "sentence-ending punctuation.")
    bert.add_argument("--input", nargs="+", required=True, help="UTF-8 text file(s)")
    bert.add_argument("--vocab", required=True, help="WordPiece vocab.txt (or a Hugging Face folder holding one)")
    bert.add_argument("--output", required=True, help="folder for train.mindrecord*, eval.mindrecord*, bert_data.json")
    bert.add_argument("--seq-len", type=int, default=128, help="tokens per example with [CLS]/[SEP] (default 128)")
    bert.add_argument("--max-predictions", type=int, help="masked tokens per example (default ceil(seq_len x p))")
    bert.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens masked (default 0.15)")
    bert.add_argument("--dupe-factor", type=int, default=1, help="maskings of the training text (default 1)")
    bert.add_argument("--short-seq-prob", type=float, default=0.1,
                      help="share of examples with a random shorter length (default 0.1)")
    bert.add_argument("--eval-fraction", type=float, default=0.05, help="share of documents held out (default 0.05)")
    bert.add_argument("--num-shards", type=int, default=1, help="MindRecord files per split (default 1)")
    bert.add_argument("--seed", type=int, default=12345, help="random seed (default 12345)")
    case = bert.add_mutually_exclusive_group()
    case.add_argument("--lower-case", dest="lower_case", action="store_true", default=None,
                      help="lower-case and strip accents (default: the vocab folder's tokenizer_config.json, else on)")
    case.add_argument("--no-lower-case", dest="lower_case", action="store_false", help="keep case and accents")
    bert.set_defaults(func=cmd_prepare_bert)

    vocab = kinds.add_parser("vocab", help="raw text -> a WordPiece vocab.txt (Hugging Face tokenizers)")
    vocab.add_argument("--input", nargs="+", required=True, help="UTF-8 text file(s)")
    vocab.add_argument("--output", required=True, help="folder for vocab.txt and tokenizer_config.json")
    vocab.add_argument("--vocab-size", type=int, default=30522, help="most tokens, special ones included (default 30522)")
    vocab.add_argument("--min-frequency", type=int, default=2, help="fewest occurrences of a merged piece (default 2)")
    vocab.add_argument("--no-lower-case", dest="lower_case", action="store_false",
                       help="keep case and accents (default: lower-case and strip accents)")
    vocab.set_defaults(func=cmd_prepare_vocab)


def cmd_prepare_vocab(args: argparse.Namespace) -> int:
    from ms_suite import api

    built = api.prepare_vocab(args.input, args.output, args.vocab_size, args.min_frequency, args.lower_case)
    print(format_mapping([("vocab", built["vocab_file"]), ("tokens", built["vocab_size"]),
                          ("lower_case", built["lower_case"])]))
    print(f"use with: ms-suite prepare-data bert --vocab {args.output} ... (or --set data.vocab={args.output})")
    return 0


def cmd_prepare_bert(args: argparse.Namespace) -> int:
    from ms_suite import api

    meta = api.prepare_bert(args.input, args.vocab, args.output, args.lower_case, seq_len=args.seq_len,
                            max_predictions=args.max_predictions, mlm_probability=args.mlm_probability,
                            short_seq_prob=args.short_seq_prob, dupe_factor=args.dupe_factor,
                            eval_fraction=args.eval_fraction, num_shards=args.num_shards, seed=args.seed)
    print(format_mapping([("output", args.output), ("documents", meta["documents"]),
                          ("train examples", meta["examples"].get("train", 0)),
                          ("eval examples", meta["examples"].get("eval", 0)),
                          ("seq_len / max predictions", f"{meta['seq_len']} / {meta['max_predictions']}"),
                          ("vocab", f"{meta['vocab_file']} ({meta['vocab_size']} tokens, lower_case "
                                    f"{meta['lower_case']})")]))
    print(f"train with: ms-suite train -c configs/bert/bert_base_pretrain.yaml --set data.path={args.output}")
    return 0
