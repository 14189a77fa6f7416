"""Small generated text for the BERT tests: a topical corpus, its vocab.txt, and a labelled set.

Documents stay on one topic, so next-sentence pairs from the same document share words while
random pairs usually do not; sentiment sentences carry class-specific words.
"""
from __future__ import annotations

import csv
import json
import os
import random
from typing import Dict, List

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOPICS: Dict[str, List[List[str]]] = {  # subjects, verbs, objects
    "farm": [["farmer", "cow", "horse", "dog"], ["feeds", "watches", "follows", "guards"],
             ["barn", "field", "fence", "hay"]],
    "sea": [["sailor", "captain", "fish", "gull"], ["steers", "crosses", "circles", "reaches"],
            ["boat", "wave", "harbor", "island"]],
    "city": [["driver", "clerk", "student", "baker"], ["visits", "cleans", "opens", "passes"],
             ["station", "market", "office", "bridge"]],
    "space": [["pilot", "robot", "probe", "crew"], ["orbits", "scans", "lands", "maps"],
              ["planet", "moon", "comet", "star"]],
}
POSITIVE = ["good", "great", "lovely", "excellent", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "sad"]
FILLER = ["the", "movie", "was", "really", "quite", "and", "story", "felt", "a", "very"]


def vocab_words() -> List[str]:
    words = {w for parts in TOPICS.values() for group in parts for w in group}
    words |= set(POSITIVE) | set(NEGATIVE) | set(FILLER) | {"the", "a", "near", ".", ",", "!"}
    return SPECIALS + sorted(words) + ["##s", "##ed"]


def write_vocab(path: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(vocab_words()) + "\n")
    return path


def write_corpus(path: str, documents: int = 48, seed: int = 0) -> str:
    """Blank-line separated documents of 6-10 sentences, each document about one topic."""
    rng = random.Random(seed)
    blocks = []
    for d in range(documents):
        subjects, verbs, objects = TOPICS[list(TOPICS)[d % len(TOPICS)]]
        sentences = [f"The {rng.choice(subjects)} {rng.choice(verbs)} the {rng.choice(objects)} near the "
                     f"{rng.choice(objects)}." for _ in range(rng.randint(6, 10))]
        # Two sentences per line in half the documents: the sentence splitter must find them.
        lines = [" ".join(sentences[i:i + 2]) for i in range(0, len(sentences), 2)] if d % 2 else sentences
        blocks.append("\n".join(lines))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n\n".join(blocks) + "\n")
    return path


def sentiment_rows(n: int, seed: int) -> List[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 5) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words).capitalize() + rng.choice([".", "!"]),
                     "label": "positive" if label else "negative"})
    return rows


def write_classification(folder: str, fmt: str = "csv", train: int = 96, eval_: int = 32) -> str:
    """``train.<fmt>`` and ``dev.<fmt>`` with text and label columns."""
    os.makedirs(folder, exist_ok=True)
    for name, n, seed in (("train", train, 1), ("dev", eval_, 2)):
        rows = sentiment_rows(n, seed)
        path = os.path.join(folder, f"{name}.{fmt}")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            if fmt == "jsonl":
                fh.writelines(json.dumps(r) + "\n" for r in rows)
            else:
                writer = csv.DictWriter(fh, ["text", "label"], delimiter="\t" if fmt == "tsv" else ",")
                writer.writeheader()
                writer.writerows(rows)
    return folder


def write_tagging(folder: str, train: int = 96, eval_: int = 32) -> str:
    """``train.jsonl`` and ``dev.jsonl``: topic sentences as word lists, tagged SUBJ/VERB/OBJ/O."""
    os.makedirs(folder, exist_ok=True)
    for name, n, seed in (("train", train, 3), ("dev", eval_, 4)):
        rng = random.Random(seed)
        with open(os.path.join(folder, f"{name}.jsonl"), "w", encoding="utf-8") as fh:
            for i in range(n):
                subjects, verbs, objects = TOPICS[list(TOPICS)[i % len(TOPICS)]]
                lead = rng.sample(FILLER, rng.randint(0, 3))  # tags follow the words, not the positions
                subject = rng.choice(subjects) + rng.choice(["", "s"])  # "farmers" -> farmer ##s
                words = lead + ["The", subject, rng.choice(verbs), "the", rng.choice(objects), "near", "the",
                                rng.choice(objects), "."]
                tags = ["O"] * len(lead) + ["O", "SUBJ", "VERB", "O", "OBJ", "O", "O", "OBJ", "O"]
                fh.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    return folder


def write_sparse_tagging(folder: str, train: int = 160, eval_: int = 48, words: int = 16) -> str:
    """Like :func:`write_tagging` but with realistically sparse tags: ``words`` - 1 untagged filler
    words and one tagged word per sentence (SUBJ for a subject, OBJ for an object): ~6% non-O."""
    os.makedirs(folder, exist_ok=True)
    topics = list(TOPICS.values())
    filler = FILLER + [v for parts in topics for v in parts[1]]  # verbs stay untagged here
    for name, n, seed in (("train", train, 5), ("dev", eval_, 6)):
        rng = random.Random(seed)
        with open(os.path.join(folder, f"{name}.jsonl"), "w", encoding="utf-8") as fh:
            for i in range(n):
                subjects, _, objects = topics[i % len(topics)]
                tag = rng.choice(["SUBJ", "OBJ"])
                sentence = [rng.choice(filler) for _ in range(words - 1)]
                at = rng.randrange(words)
                sentence.insert(at, rng.choice(subjects if tag == "SUBJ" else objects))
                tags = ["O"] * words
                tags[at] = tag
                fh.write(json.dumps({"tokens": sentence, "tags": tags}) + "\n")
    return folder
