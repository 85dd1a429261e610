"""Answering the evaluation questions with a model: greedy answers, their confidences, and the
model's probabilities over every candidate value.

Confidence of an answer (`confidence`): the model's probability of its greedy answer, the product
of the probabilities of the answer's tokens and of the token that ends it (`<|eos|>`, or
`<|confidence|>` for a model that states one). Multi-token answers therefore get sequence
probabilities, never a first-token shortcut.

Candidate probabilities: every attribute in the synthetic world has a closed set of values (its
vocabulary in world.json). Each value v is scored after the question as
P(" v" then an end token) = P(tokens of v) x (P(<|eos|>) + P(<|confidence|>)), and so is
"I don't know". From these:
- `guess`: the most probable value, the model's best non-abstaining guess, and `guess_confidence`
  its probability normalised over the values only ("if I answer, how likely am I right"); it
  exists for every question, also where the model abstained, which is what the behavioural audit
  needs; `guess_seq_confidence` its unnormalised sequence probability P(" v" then an end token),
  the number a threshold policy on the sequence probability compares with t;
- `cand_confidence`: the greedy answer's probability normalised over the values (0 when the
  answer is not one of them, empty for abstentions);
- `p_idk`: the sequence probability of "I don't know".
"I don't know" is left out of the normaliser on purpose: its mass is the model's wish to
abstain, not a probability that some value is right.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from nextlab.data.world import IDK
from nextlab.generate import EOS_ID, PAD_ID, generate
from nextlab.progress import bar as progress_bar
from nextlab.qa.codec import QACodec, answer_end, graded
from nextlab.qa.grading import grade, is_abstention, normalize
from nextlab.tokenizer.bpe import CONFIDENCE_ID

END_IDS = (EOS_ID, CONFIDENCE_ID)


@torch.no_grad()
def greedy_answers(
    model: torch.nn.Module, codec: QACodec, questions: Sequence[str], golds: Sequence[str],
    max_new_tokens: int, batch_size: int = 64,
) -> pd.DataFrame:
    """Columns: answer, grade, confidence, stated_confidence, finished, answer_tokens."""
    rows = []
    bar = progress_bar(len(questions), "question", "answering")
    for start in range(0, len(questions), batch_size):
        prompts = [codec.prompt(q) for q in questions[start : start + batch_size]]
        out = generate(model, prompts, max_new_tokens, temperature=0.0, eos_id=EOS_ID)
        bar.update(len(prompts))
        for i in range(len(prompts)):
            decoded = codec.decode(out.tokens[i])
            end = answer_end(out.tokens[i])
            g = graded(decoded, golds[start + i])
            rows.append({
                "answer": decoded.answer.strip(),
                "grade": g,
                "confidence": math.exp(sum(out.logprobs[i][:end])),
                "stated_confidence": math.nan if decoded.stated is None else decoded.stated,
                "finished": decoded.finished,
                "answer_tokens": decoded.answer_tokens,
            })
    bar.close()
    return pd.DataFrame(rows, columns=["answer", "grade", "confidence", "stated_confidence", "finished",
                                       "answer_tokens"])


@dataclass(frozen=True)
class _Trie:
    """One candidate list as a trie laid out after a prompt: `tokens[i]` at slot i, `depth[i]` its
    position after the prompt, `sees[i, k]` whether slot i attends to slot k (its ancestors and
    itself), and for candidate c the slots of its tokens (`path[c, :length[c]]`, -1 after)."""

    tokens: np.ndarray
    depth: np.ndarray
    sees: np.ndarray
    first: np.ndarray  # each candidate's first token (predicted by the prompt's last position)
    path: np.ndarray
    length: np.ndarray


@functools.lru_cache(maxsize=64)
def _trie(candidates: tuple[tuple[int, ...], ...]) -> _Trie:
    slot: dict[tuple[int, ...], int] = {}
    for c in candidates:
        for j in range(1, len(c) + 1):
            slot.setdefault(c[:j], len(slot))
    n, longest = len(slot), max(len(c) for c in candidates)
    sees = np.zeros((n, n), dtype=bool)
    for prefix, i in slot.items():
        sees[i, [slot[prefix[:j]] for j in range(1, len(prefix) + 1)]] = True
    path = np.full((len(candidates), longest), -1)
    for row, c in enumerate(candidates):
        path[row, : len(c)] = [slot[c[:j]] for j in range(1, len(c) + 1)]
    return _Trie(np.array([p[-1] for p in slot]), np.array([len(p) - 1 for p in slot]), sees,
                 np.array([c[0] for c in candidates]), path, np.array([len(c) for c in candidates]))


@torch.no_grad()
def candidate_logprobs(
    model: torch.nn.Module, prompts: list[list[int]], candidates: list[list[list[int]]],
    end_ids: tuple[int, ...] | None = END_IDS,
) -> list[np.ndarray]:
    """log P(candidate tokens, then an end token | prompt) for every candidate of every prompt;
    with `end_ids=None`, log P(candidate tokens | prompt) (a value inside running text, where
    anything may follow it).

    A prompt's candidates share prefixes (years their first digits, names their first syllables),
    so they are laid out as a trie after the prompt, each distinct prefix once, and the whole row
    runs as one forward pass: a trie token sits at position len(prompt) + its depth and attends to
    the prompt and its own ancestors only, so it sees exactly what it would see at the end of
    `prompt + prefix`. No prefix is computed twice and nothing is recomputed per candidate (a
    padded batch of whole candidates after a repeated prompt cache costs about 2.3x as many token
    positions on the default world, and copying the cache for every row cost more than that).
    """
    device = next(model.parameters()).device
    if any(len(c) == 0 for cands in candidates for c in cands):
        raise ValueError("a candidate answer has no tokens")
    tries = [_trie(tuple(tuple(c) for c in cands)) for cands in candidates]
    P = max(len(p) for p in prompts)
    width = P + max(len(t.tokens) for t in tries)
    B = len(prompts)
    idx = np.full((B, width), PAD_ID)
    positions = np.zeros((B, width), dtype=np.int64)
    allowed = np.zeros((B, width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding attends to itself: softmax stays finite
    causal = np.tril(np.ones((P, P), dtype=bool))
    for b, (prompt, trie) in enumerate(zip(prompts, tries)):
        start, n = P - len(prompt), len(trie.tokens)  # the prompt is left-padded
        idx[b, start:P], idx[b, P : P + n] = prompt, trie.tokens
        positions[b, start:P] = np.arange(len(prompt))
        positions[b, P : P + n] = len(prompt) + trie.depth
        allowed[b, start:P, start:P] = causal[: len(prompt), : len(prompt)]
        allowed[b, P : P + n, start:P] = True
        allowed[b, P : P + n, P : P + n] = trie.sees
    logits = model(torch.from_numpy(idx).to(device), positions=torch.from_numpy(positions).to(device),
                   allowed=torch.from_numpy(allowed)[:, None].to(device))
    logp = F.log_softmax(logits.float(), dim=-1)
    if end_ids is None:
        end = np.zeros(logp.shape[:2])
    else:
        end = torch.logsumexp(logp[:, :, list(end_ids)], dim=-1).cpu().numpy()  # (B, width)
    logp = logp.cpu().numpy()
    out = []
    for b, trie in enumerate(tries):
        rows = logp[b, P:]
        total = logp[b, P - 1, trie.first]
        # token j > 0 of a candidate is predicted by the slot of its token j - 1
        following = trie.path[:, 1:]
        inside = following >= 0
        previous = np.where(inside, trie.path[:, :-1], 0)
        tokens = trie.tokens[np.where(inside, following, 0)]
        total = total + np.where(inside, rows[previous, tokens], 0.0).sum(axis=1)
        last = trie.path[np.arange(len(trie.length)), trie.length - 1]
        out.append(total + end[b, P + last])
    return out


def candidate_columns(
    model: torch.nn.Module, codec: QACodec, questions: Sequence[str], attributes: Sequence[str],
    answers: Sequence[str], golds: Sequence[str], vocabularies: dict[str, list[str]], batch_size: int = 32,
) -> pd.DataFrame:
    """Columns: guess, guess_confidence, guess_seq_confidence, guess_correct, cand_confidence, p_idk
    (see module doc)."""
    encoded = {attr: [codec.answer_body(v) for v in values] + [codec.answer_body(IDK)]
               for attr, values in vocabularies.items()}
    normal = {attr: [normalize(v) for v in values] for attr, values in vocabularies.items()}
    rows: dict[int, dict] = {}
    # Batches of one attribute at a time: its candidates have similar lengths, so little padding.
    order = sorted(range(len(questions)), key=lambda i: (attributes[i], i))
    bar = progress_bar(len(order), "question", "scoring candidates")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        bar.update(len(chunk))
        scores = candidate_logprobs(model, [codec.prompt(questions[i]) for i in chunk],
                                    [encoded[attributes[i]] for i in chunk])
        for i, lp in zip(chunk, scores):
            values = vocabularies[attributes[i]]
            value_lp, idk_lp = lp[:-1], lp[-1]
            probs = np.exp(value_lp - np.logaddexp.reduce(value_lp))
            best = int(np.argmax(probs))
            answer = normalize(answers[i])
            if is_abstention(answers[i]):
                cand_conf = math.nan
            elif answer in normal[attributes[i]]:
                cand_conf = float(probs[normal[attributes[i]].index(answer)])
            else:
                cand_conf = 0.0
            rows[i] = {
                "guess": values[best],
                "guess_confidence": float(probs[best]),
                "guess_seq_confidence": float(np.exp(value_lp[best])),
                "guess_correct": grade(values[best], golds[i]) == "correct",
                "cand_confidence": cand_conf,
                "p_idk": float(np.exp(idk_lp)),
            }
    bar.close()
    return pd.DataFrame([rows[i] for i in range(len(questions))],
                        columns=["guess", "guess_confidence", "guess_seq_confidence", "guess_correct",
                                 "cand_confidence", "p_idk"])
