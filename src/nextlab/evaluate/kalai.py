"""Kalai et al.'s bound in its own terms: a calibrated *pretrained* model that must answer.

The theorem (Kalai, Nachum, Vempala, Zhang 2025) says that a base model calibrated on facts it
saw once, forced to produce a value, errs on roughly at least the singleton rate of them (the
share of facts seen exactly once), less its miscalibration and terms that shrink with the data.
It is a statement about the pretrained model, not about a fine-tuned one that may abstain. So:

1. *calibration inside fresh biographies*: each seen person's never-trained biography rendering
   (validation text) is cut before each fact's value; every value of the attribute's vocabulary
   is scored as the continuation (the product of its tokens' probabilities, teacher-forced), and
   normalised over the vocabulary. The best value is the model's forced answer, its normalised
   probability its confidence: ECE and a reliability table over all facts;
2. *forced-answer hallucination*: the share of facts whose best value is wrong, on facts seen
   once and on all seen facts, beside the singleton rate, with intervals.

Worked example of the summary (three facts seen once, one seen four times):

>>> import pandas as pd
>>> rows = pd.DataFrame({"mentions": [1, 1, 1, 4], "confidence": [0.3, 0.2, 0.9, 0.95],
...                      "correct": [False, False, True, True]})
>>> s = bound_summary(rows, singleton_rate=0.75, n_bins=10, n_boot=0, seed=0)
>>> s["forced_error_k1"], s["forced_error_all"], s["singleton_rate"]
(0.6666666666666666, 0.5, 0.75)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from nextlab.evaluate.bootstrap import interval, weighted_mean
from nextlab.qa import metrics as M
from nextlab.qa.answers import candidate_logprobs
from nextlab.train.facts import BOS_ID, value_token_positions


@torch.no_grad()
def value_candidates(
    model: torch.nn.Module, tokenizer: Any, docs: list[dict[str, Any]], mentions: dict[str, int],
    vocabularies: dict[str, list[str]], batch_size: int = 32,
) -> pd.DataFrame:
    """One row per fact of the fresh biographies: person, attribute, mentions, gold, guess,
    confidence (the guess's probability normalised over the vocabulary), gold_probability,
    correct. Every candidate value is scored as the continuation of the text before the fact
    (`qa.answers.candidate_logprobs`: the candidates as a trie, facts of one attribute batched)."""
    bios = [d for d in docs if d.get("kind") == "bio" and d.get("spans") and d.get("person") in mentions]
    block = model.config.block_size
    model.eval()
    encoded = {attr: [tokenizer.encode(" " + v, add_special_tokens=False).ids for v in values]
               for attr, values in vocabularies.items()}
    facts = []  # (person, attribute, gold, prefix)
    encodings = tokenizer.encode_batch([d["text"] for d in bios], add_special_tokens=False)
    for doc, enc in zip(bios, encodings):
        for attribute, a, b in doc["spans"]:
            if attribute not in encoded:
                continue
            positions = value_token_positions(enc.offsets, a, b)
            if not positions:
                continue
            prefix = [BOS_ID, *enc.ids[: positions[0]]]
            if len(prefix) + max(len(c) for c in encoded[attribute]) > block:
                continue  # the value falls beyond the context window
            facts.append((doc["person"], attribute, doc["text"][a:b], prefix))
    scores: dict[int, np.ndarray] = {}
    order = sorted(range(len(facts)), key=lambda i: (facts[i][1], i))  # one attribute's candidates per batch
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        out = candidate_logprobs(model, [facts[i][3] for i in chunk], [encoded[facts[i][1]] for i in chunk],
                                 end_ids=None)
        scores.update(zip(chunk, out))
    rows = []
    for i, (person, attribute, gold, _) in enumerate(facts):
        probs = np.exp(scores[i] - np.logaddexp.reduce(scores[i]))
        values = vocabularies[attribute]
        best = int(np.argmax(probs))
        rows.append({
            "person": person, "attribute": attribute, "mentions": int(mentions[person]),
            "gold": gold, "guess": values[best], "confidence": float(probs[best]),
            "gold_probability": float(probs[values.index(gold)]) if gold in values else math.nan,
            "correct": values[best] == gold,
        })
    return pd.DataFrame(rows, columns=["person", "attribute", "mentions", "gold", "guess", "confidence",
                                       "gold_probability", "correct"])


def bound_summary(rows: pd.DataFrame, singleton_rate: float, n_bins: int, n_boot: int, seed: int) -> dict[str, float]:
    """ECE of the forced answer's confidence (equal width, over all facts), the forced error on
    facts seen once and on all facts (95% bootstrap intervals over facts, as in `summary`), the
    singleton rate, and whether the bound holds: forced error on all facts >= singleton rate -
    ECE (the theorem's terms that shrink with the data size are left out)."""
    from nextlab.evaluate.summary import _ece_stat

    conf = rows["confidence"].to_numpy(float)[None, :]
    y = rows["correct"].to_numpy(float)[None, :]
    ones = np.ones_like(conf)
    n = conf.shape[1]
    out: dict[str, float] = {"facts": float(n), "singleton_rate": float(singleton_rate)}
    out["ece"], out["ece_lo"], out["ece_hi"] = interval(_ece_stat(ones, conf[0:1], y, n_bins), 1, n, n_boot, seed)
    out["mean_confidence"], _, _ = interval(lambda C: weighted_mean(C, ones, conf), 1, n, 0, seed)
    for name, sel in (("k1", rows["mentions"].to_numpy() == 1), ("all", np.ones(n, bool))):
        w = sel[None, :].astype(float)
        value, lo, hi = interval(lambda C, w=w: weighted_mean(C, w, 1.0 - y), 1, n, n_boot, seed)
        out[f"forced_error_{name}"], out[f"forced_error_{name}_lo"], out[f"forced_error_{name}_hi"] = value, lo, hi
        out[f"facts_{name}"] = float(sel.sum())
    out["bound"] = singleton_rate - out["ece"]
    out["bound_holds"] = float(out["forced_error_all"] >= out["bound"])
    return out


def reliability_table(rows: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per non-empty confidence bin: facts, mean confidence, share right (the reliability diagram)."""
    counts, conf, acc = M.reliability_bins(rows["confidence"].to_numpy(float), rows["correct"].to_numpy(bool),
                                           n_bins, "width")
    return pd.DataFrame({"facts": counts, "confidence": conf, "accuracy": acc})
