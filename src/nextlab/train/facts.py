"""Has the model memorised its facts? Accuracy on held-out text, by how often a fact was seen.

Two probes, both cut by the person's mention count k (biography renderings in training):

* **bio**: each seen person has a fresh biography rendering in the validation text (never
  trained on). Teacher-forced, a fact counts as known when the greedy next-token prediction is
  right for *every* token of the attribute's value, e.g. all of " Zhuskshar", " Foundry".
* **qa**: the evaluation split's questions (never trained on as QA lines) are prompted as
  `<|bos|><|question|>q<|answer|>` and decoded greedily to `<|eos|>`; correct when the decoded
  answer equals the gold one (whitespace-stripped). This needs extraction, not only storage.

A model that memorises shows accuracy rising with k; a 1-mention fact is mostly unknown. How the
train stage calls it (a trained model, its tokenizer, the validation documents and the QA table)::

    table = by_mentions(bio_fact_rows(model, tok, val_docs, mentions), qa_rows(model, tok, qa))
    list(table.columns)  # ['mentions', 'bio_facts', 'bio_acc', 'qa_questions', 'qa_acc']
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from nextlab.generate import generate, pad
from nextlab.qa.codec import QACodec
from nextlab.tokenizer import BOS_ID, EOS_ID


def value_token_positions(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose character offsets overlap [start, end).

    >>> value_token_positions([(0, 3), (3, 9), (9, 13), (13, 14)], 4, 13)
    [1, 2]
    """
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start]


@torch.no_grad()
def bio_fact_rows(
    model: torch.nn.Module,
    tokenizer: Any,
    docs: list[dict[str, Any]],
    mentions: dict[str, int],
    batch_size: int = 32,
) -> pd.DataFrame:
    """One row per (document, attribute) of the `kind == "bio"` documents with character `spans`.

    Columns: person, attribute, mentions, tokens (of the value), token_acc, correct.
    """
    bios = [d for d in docs if d.get("kind") == "bio" and d.get("spans") and d.get("person") in mentions]
    block = model.config.block_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    encodings = tokenizer.encode_batch([d["text"] for d in bios], add_special_tokens=False)
    for start in range(0, len(bios), batch_size):
        chunk = list(zip(bios[start : start + batch_size], encodings[start : start + batch_size]))
        seqs = [[BOS_ID, *enc.ids][:block] for _, enc in chunk]
        # Right padding needs no mask: a causal model never looks ahead at the padding.
        idx, _ = pad(seqs)
        predicted = model(idx.to(device)).argmax(-1).cpu()
        for r, (doc, enc) in enumerate(chunk):
            for attribute, a, b in doc["spans"]:
                # +1: the bos token shifts every text token one place right.
                positions = [p + 1 for p in value_token_positions(enc.offsets, a, b)]
                if not positions or positions[-1] >= len(seqs[r]):
                    continue  # the value fell beyond the context window
                hits = [bool(predicted[r, p - 1] == idx[r, p]) for p in positions]
                rows.append({
                    "person": doc["person"], "attribute": attribute, "mentions": mentions[doc["person"]],
                    "tokens": len(hits), "token_acc": sum(hits) / len(hits), "correct": all(hits),
                })
    model.train(was_training)
    return pd.DataFrame(rows, columns=["person", "attribute", "mentions", "tokens", "token_acc", "correct"])


def qa_rows(
    model: torch.nn.Module,
    tokenizer: Any,
    qa: pd.DataFrame,
    split: str = "eval",
    batch_size: int = 64,
) -> pd.DataFrame:
    """Greedy answers to the seen people's questions of one split.

    Columns: question_id, mentions, answer, prediction, correct.
    """
    rows = qa[(qa["split"] == split) & qa["seen"]]
    answers = rows["answer"].tolist()
    longest = max((len(tokenizer.encode(" " + a, add_special_tokens=False).ids) for a in answers), default=0)
    codec = QACodec(tokenizer)  # the QA format every later stage uses
    all_prompts = [codec.prompt(q) for q in rows["question"]]
    # Questions whose prompt leaves no room for the answer in the context window are left out.
    fits = [len(p) + longest + 1 <= model.config.block_size for p in all_prompts]
    rows = rows[fits]
    answers = [a for a, ok in zip(answers, fits) if ok]
    all_prompts = [p for p, ok in zip(all_prompts, fits) if ok]
    predictions: list[str] = []
    for start in range(0, len(all_prompts), batch_size):
        prompts = all_prompts[start : start + batch_size]
        out = generate(model, prompts, max_new_tokens=longest + 4, temperature=0.0, eos_id=EOS_ID)
        predictions.extend(tokenizer.decode(out.completion(i), skip_special_tokens=False) for i in range(len(prompts)))
    return pd.DataFrame({
        "question_id": rows["question_id"].tolist(),
        "mentions": rows["mentions"].astype(int).tolist(),
        "answer": answers,
        "prediction": predictions,
        "correct": [p.strip() == a.strip() for p, a in zip(predictions, answers)],
    })


def by_mentions(bio: pd.DataFrame, qa: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each probe per mention count (NaN where a probe has no item for that k)."""
    ks = sorted(set(bio["mentions"].tolist()) | set(qa["mentions"].tolist()))
    table = []
    for k in ks:
        b = bio[bio["mentions"] == k]
        q = qa[qa["mentions"] == k]
        table.append({
            "mentions": int(k),
            "bio_facts": len(b),
            "bio_acc": float(b["correct"].mean()) if len(b) else float("nan"),
            "qa_questions": len(q),
            "qa_acc": float(q["correct"].mean()) if len(q) else float("nan"),
        })
    return pd.DataFrame(table, columns=["mentions", "bio_facts", "bio_acc", "qa_questions", "qa_acc"])


def flat_metrics(table: pd.DataFrame, bio: pd.DataFrame, qa: pd.DataFrame) -> dict[str, float]:
    """`bio_acc_k{k}`, `qa_acc_k{k}` per mention count and the overall `bio_acc`, `qa_acc`."""
    out: dict[str, float] = {}
    for row in table.itertuples(index=False):
        out[f"bio_acc_k{row.mentions}"] = row.bio_acc
        out[f"qa_acc_k{row.mentions}"] = row.qa_acc
    out["bio_acc"] = float(bio["correct"].mean()) if len(bio) else float("nan")
    out["qa_acc"] = float(qa["correct"].mean()) if len(qa) else float("nan")
    # NaN is not JSON; a probe with nothing to measure leaves its key out.
    return {key: value for key, value in out.items() if value == value}
