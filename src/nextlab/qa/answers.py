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
  needs;
- `cand_confidence`: the greedy answer's probability normalised over the values (0 when the
  answer is not one of them, empty for abstentions);
- `p_idk`: the sequence probability of "I don't know".
"I don't know" is left out of the normaliser on purpose: its mass is the model's wish to
abstain, not a probability that some value is right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from nextlab.data.world import IDK
from nextlab.generate import EOS_ID, PAD_ID, generate, left_pad
from nextlab.qa.codec import QACodec, answer_end
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
    for start in range(0, len(questions), batch_size):
        prompts = [codec.prompt(q) for q in questions[start : start + batch_size]]
        out = generate(model, prompts, max_new_tokens, temperature=0.0, eos_id=EOS_ID)
        for i in range(len(prompts)):
            decoded = codec.decode(out.tokens[i])
            end = answer_end(out.tokens[i])
            g = grade(decoded.answer, golds[start + i]) if decoded.finished else "wrong"
            rows.append({
                "answer": decoded.answer.strip(),
                "grade": g,
                "confidence": math.exp(sum(out.logprobs[i][:end])),
                "stated_confidence": math.nan if decoded.stated is None else decoded.stated,
                "finished": decoded.finished,
                "answer_tokens": decoded.answer_tokens,
            })
    return pd.DataFrame(rows, columns=["answer", "grade", "confidence", "stated_confidence", "finished",
                                       "answer_tokens"])


@torch.no_grad()
def candidate_logprobs(
    model: torch.nn.Module, prompts: list[list[int]], candidates: list[list[list[int]]],
) -> list[np.ndarray]:
    """log P(candidate tokens, then an end token | prompt) for every candidate of every prompt.

    One forward pass over the (left-padded) prompts fills a KV cache; each prompt's cache is
    repeated for its candidates, which run as one right-padded batch (causal attention: the
    padding after a candidate never reaches it, and positions continue from the prompt's).
    """
    device = next(model.parameters()).device
    idx, mask = left_pad(prompts, PAD_ID, device)
    logits, cache = model(idx, attention_mask=mask, use_cache=True)
    first_logp = F.log_softmax(logits[:, -1].float(), dim=-1)  # predicts every candidate's first token
    owner = torch.tensor([q for q, cands in enumerate(candidates) for _ in cands], device=device)
    flat = [c for cands in candidates for c in cands]
    if any(len(c) == 0 for c in flat):
        raise ValueError("a candidate answer has no tokens")
    L = max(len(c) for c in flat)
    cand = torch.full((len(flat), L), PAD_ID, dtype=torch.long)
    for row, c in enumerate(flat):
        cand[row, : len(c)] = torch.tensor(c, dtype=torch.long)
    cand = cand.to(device)
    past = [(k.index_select(0, owner), v.index_select(0, owner)) for k, v in cache]
    full_mask = torch.cat([mask.index_select(0, owner), torch.ones_like(cand)], dim=1)
    cand_logits = model(cand, attention_mask=full_mask, past_kv=past).float()
    # log-softmax only where it is read (the full (rows, L, vocab) tensor is the costly part)
    norm = torch.logsumexp(cand_logits, dim=-1)  # (rows, L)

    lengths = torch.tensor([len(c) for c in flat], device=device)
    # token j of a candidate is predicted by the prompt's last position (j = 0) or candidate j - 1
    token_lp = torch.zeros((len(flat), L), device=device)
    token_lp[:, 0] = first_logp[owner].gather(1, cand[:, :1]).squeeze(1)
    if L > 1:
        token_lp[:, 1:] = cand_logits[:, :-1].gather(2, cand[:, 1:, None]).squeeze(2) - norm[:, :-1]
    in_cand = torch.arange(L, device=device)[None, :] < lengths[:, None]
    body = (token_lp * in_cand).sum(1)
    rows = torch.arange(len(flat), device=device)
    last = cand_logits[rows, lengths - 1]  # the logits after the final token
    end = torch.logsumexp(last[:, list(END_IDS)], dim=-1) - norm[rows, lengths - 1]
    total = (body + end).cpu().numpy()
    out, start = [], 0
    for cands in candidates:
        out.append(total[start : start + len(cands)])
        start += len(cands)
    return out


def candidate_columns(
    model: torch.nn.Module, codec: QACodec, questions: Sequence[str], attributes: Sequence[str],
    answers: Sequence[str], golds: Sequence[str], vocabularies: dict[str, list[str]], batch_size: int = 16,
) -> pd.DataFrame:
    """Columns: guess, guess_confidence, guess_correct, cand_confidence, p_idk (see module doc)."""
    encoded = {attr: [codec.answer_body(v) for v in values] + [codec.answer_body(IDK)]
               for attr, values in vocabularies.items()}
    normal = {attr: [normalize(v) for v in values] for attr, values in vocabularies.items()}
    rows: dict[int, dict] = {}
    # Batches of one attribute at a time: its candidates have similar lengths, so little padding.
    order = sorted(range(len(questions)), key=lambda i: (attributes[i], i))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
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
                "guess_correct": grade(values[best], golds[i]) == "correct",
                "cand_confidence": cand_conf,
                "p_idk": float(np.exp(idk_lp)),
            }
    return pd.DataFrame([rows[i] for i in range(len(questions))], columns=["guess", "guess_confidence", "guess_correct", "cand_confidence", "p_idk"])
