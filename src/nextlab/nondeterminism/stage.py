"""The nondeterminism stage: one job per model x dtype x attention path x thread count, and a
summary per model.

Job outputs in `out_dir` (results/<study>/nondeterminism/<model>/<dtype>/<attention>/threads<k>/):

| file | content |
|---|---|
| `prompts.parquet` | the target prompts: id, kind (qa, bio, unseen; text where a user corpus replaces the world), text, tokens, gold answer |
| `logits.parquet` | per target x path x measure (prefill/decode) x batch size x padding: steps, steps not bitwise equal to alone, max/mean abs logit difference, argmax flips, first flip, min top-2 margin; `run` is `first`, or `control` for the rerun of the largest batch |
| `steps.parquet` | per step of the default path's teacher-forced runs (`decode`: the free runs up to their first divergence, see `decode_from_free`): margin, max abs difference (the drift), not equal, flip |
| `completions.parquet` | per target x path x batch size x padding (and each repeated request): the free-running completion, whether and where it diverges from alone, against float64, QA grades |
| `unique.parquet` | per repeated prompt: requests and distinct completions |
| `timing.parquet` | per path x measure x batch size x padding: wall and CPU seconds, tokens |
| `env.json` | the environment fingerprint (`env.fingerprint`), with the matmul kernels oneDNN runs for bf16 and the job's dtype |
| `provenance.json` | code version, params hash, data and tokenizer hashes, the checkpoint |
| `metrics.json` | flat metrics (`metrics.job_metrics`) |

Every check on params and inputs runs before the model is loaded. A job is
`run(study, Inputs(ckpt, data, tokenizer), out, model=, dtype=, attention=, threads=)`; the summary
over a model's jobs is `nextlab.nondeterminism.summary.run`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nextlab.config import Study
from nextlab.config.nondeterminism import ATTENTION_PATHS, DTYPES, TABLES
from nextlab.data.stage import read_jsonl
from nextlab.errors import NextlabError
from nextlab.io import atomic_path, require_file, write_json
from nextlab.model import GPT
from nextlab.model.checkpoint import model_from_checkpoint
from nextlab.model.device import resolve_device
from nextlab.model.invariant import BatchInvariantGPT
from nextlab.nondeterminism.decode import window_for
from nextlab.nondeterminism.env import dtype_runs, fingerprint
from nextlab.nondeterminism.measures import truncate
from nextlab.nondeterminism.metrics import job_metrics
from nextlab.nondeterminism.prompts import (
    TEXT_PROMPT_WORDS,
    Prompt,
    build_pool,
    build_text_pool,
    choose_targets,
    choose_text_targets,
)
from nextlab.nondeterminism.study import Models, Runner, unique_completions
from nextlab.provenance import data_hash_of, provenance
from nextlab.qa.codec import QACodec, graded
from nextlab.qa.inputs import checked_checkpoint, read_qa, tokenizer_and_hash
from nextlab.tokenizer import EOS_ID

log = logging.getLogger(__name__)


def job_name(model: str, dtype: str, attention: str, threads: int) -> str:
    return f"{model}/{dtype}/{attention}/threads{threads}"


def check_factors(study: Study, dtype: str, attention: str, threads: int, device: torch.device) -> torch.dtype:
    """The job's factors are known and the device can run the dtype; returns the torch dtype."""
    if dtype not in DTYPES:
        raise NextlabError(f"dtype {dtype!r} is unknown; allowed: {', '.join(DTYPES)}")
    if attention not in ATTENTION_PATHS:
        raise NextlabError(f"attention path {attention!r} is unknown; allowed: {', '.join(ATTENTION_PATHS)}")
    if threads < 1:
        raise NextlabError(f"threads must be >= 1, got {threads}")
    torch_dtype = getattr(torch, dtype)
    problem = dtype_runs(device, torch_dtype)
    if problem:
        raise NextlabError(f"dtype {dtype} cannot run on {device} ({problem}); choose another in nondeterminism.dtypes")
    return torch_dtype


def check_sizes(study: Study, model_name: str, targets: list[Prompt], pool: list[Prompt], where: str,
                factors: tuple[str, str, int]) -> None:
    p = study.nondeterminism
    if not targets:
        raise NextlabError("nondeterminism.qa_prompts, bio_prompts and unseen_prompts are all 0: nothing to decode")
    biggest = max(p.batch_sizes + p.repeat_batch_sizes)
    if biggest > len(pool):
        raise NextlabError(
            f"nondeterminism.batch_sizes holds {biggest}, but {where} gives only {len(pool)} different prompts "
            f"(evaluation questions and biography openings) to fill a batch; lower the batch size"
        )
    if p.repeat_prompts > len(targets) and p.sends_repeats(*factors):
        raise NextlabError(
            f"nondeterminism.repeat_prompts={p.repeat_prompts} exceeds the {len(targets)} target prompts "
            f"(qa_prompts + bio_prompts + unseen_prompts)"
        )
    block = study.models[model_name].block_size
    longest = max(len(t.tokens) for t in pool)
    try:
        window_for(block, longest, p.max_new_tokens)
    except ValueError as err:
        raise NextlabError(f"nondeterminism.max_new_tokens={p.max_new_tokens} needs context restarts, but {err}; "
                           f"lower max_new_tokens to {block - longest} or use shorter prompts") from None
    if p.stop_at_eos and longest + p.max_new_tokens > block:
        raise NextlabError("nondeterminism.stop_at_eos: decoding past the context (max_new_tokens) needs "
                           "stop_at_eos false")


def load_models(ckpt: dict[str, Any], attention: str, dtype: torch.dtype, device: torch.device,
                invariant: bool, reference: bool) -> Models:
    def build(d: torch.dtype) -> GPT:
        return model_from_checkpoint(ckpt, device, dtype=d, attention=attention)

    default = build(dtype)
    return Models(
        default=default,
        invariant=BatchInvariantGPT(default) if invariant else None,
        reference=build(torch.float64) if reference else None,
    )


@dataclass(frozen=True)
class Inputs:
    """The files a nondeterminism job reads."""

    ckpt: Path  # the checkpoint to decode
    data: Path  # the data stage's folder
    tokenizer: Path  # the tokenize stage's folder


def run(study: Study, inputs: Inputs, out: str | Path, *, model: str, dtype: str, attention: str,
        threads: int) -> dict[str, Any]:
    """One job (one model x dtype x attention path x thread count): write the tables, env.json and
    metrics.json into `out`; return the metrics."""
    model_name, ckpt_path, data_dir, tokenizer_dir = model, inputs.ckpt, inputs.data, inputs.tokenizer
    p = study.nondeterminism
    device = resolve_device(study.device)
    torch_dtype = check_factors(study, dtype, attention, threads, device)
    data_hash = data_hash_of(data_dir)
    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    codec = QACodec(tok)
    if study.data.synthetic:
        qa_path = Path(data_dir) / "qa.parquet"
        qa = read_qa(qa_path)
        if "name" not in qa.columns:
            raise NextlabError(f"{qa_path}: lacks the column 'name' that biography openings need")
        qa_pool, bio_pool, unseen_pool = build_pool(qa, qa_path, codec, tok, p.bio_prompt_words, study.seed)
        pool = qa_pool + bio_pool + unseen_pool
        targets = choose_targets(qa_pool, bio_pool, p.qa_prompts, p.bio_prompts, study.seed, str(qa_path),
                                 unseen_pool, p.unseen_prompts)
        where, ckpt_stage = str(qa_path), p.checkpoint
    else:  # a user corpus replaces the world: continue the user's held-out text, with the pretrained model
        val_path = Path(data_dir) / "corpus" / "val.jsonl"
        documents = [doc["text"] for doc in read_jsonl(require_file(val_path, "held-out corpus"))]
        pool = build_text_pool(documents, tok, TEXT_PROMPT_WORDS, study.models[model_name].block_size // 2)
        n_targets = p.qa_prompts + p.bio_prompts + p.unseen_prompts
        targets = choose_text_targets(pool, n_targets, study.seed, str(val_path))
        where, ckpt_stage = str(val_path), "pretrain"
    check_sizes(study, model_name, targets, pool, where, (dtype, attention, threads))
    ckpt = checked_checkpoint(ckpt_path, study, model_name, tok_hash, tok.get_vocab_size(), stage=ckpt_stage)

    torch.set_num_threads(threads)
    # The invariant mode has its own attention kernel, so the attention path does not change it:
    # it runs once per dtype, in the job of the first attention path and thread count listed (a
    # positive control needs no power: it must show no difference at all).
    invariant = p.invariant_control and (attention == p.attention[0] or attention not in p.attention) and (
        threads == p.threads[0] or threads not in p.threads)
    models = load_models(ckpt, attention, torch_dtype, device, invariant, p.float64_reference)

    def grader(prompt: Prompt, tokens: list[int]) -> str | None:
        if prompt.kind != "qa":
            return None
        decoded = codec.decode(truncate(tokens, EOS_ID))
        return graded(decoded, prompt.gold)

    start = time.perf_counter()
    window = window_for(study.models[model_name].block_size, max(len(t.tokens) for t in pool), p.max_new_tokens)
    tables = Runner(models, targets, pool, p, study.seed, EOS_ID, grader, window,
                    repeat=p.sends_repeats(dtype, attention, threads)).measure().frames()
    seconds = time.perf_counter() - start
    tables["unique"] = unique_completions(tables["completions"], EOS_ID if p.stop_at_eos else None)
    tables["prompts"] = pd.DataFrame([{"prompt_id": t.prompt_id, "kind": t.kind, "text": t.text,
                                       "tokens": " ".join(map(str, t.tokens)), "gold": t.gold} for t in targets])
    metrics = job_metrics(tables["logits"], tables["completions"], tables["timing"], tables["unique"],
                          list(p.batch_sizes), list(p.cache_modes), steps=tables["steps"])
    factors = {"model": model_name, "dtype": dtype, "attention": attention, "threads": threads}
    env = fingerprint(device, torch_dtype)
    if models.invariant is not None:  # which attention kernel the invariant control measured
        env["invariant_attention"] = ("fused" if models.invariant.fused_kernel(torch_dtype, torch.device(device))
                                      else "blocked")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        table = tables[name].assign(**factors)
        with atomic_path(out / f"{name}.parquet") as tmp:
            table.to_parquet(tmp, index=False)
    write_json(out / "env.json", {**factors, **env})
    # Decoding speed differs run to run: it lives in timing.json, apart from what was measured.
    speed = {k: metrics.pop(k) for k in list(metrics) if k.startswith(("tokens_per_s_", "invariant_slowdown_"))}
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", {"seconds": seconds, **speed})
    # The per-batch-size metrics (`<key>_b<size>`) as one row per batch size: curves over it.
    by_batch = [{"batch_size": b, **{k.removesuffix(f"_b{b}"): v for k, v in metrics.items() if k.endswith(f"_b{b}")}}
                for b in p.batch_sizes]
    with atomic_path(out / "by_batch_size.csv") as tmp:
        pd.DataFrame(by_batch).rename(columns={"batch_size": "step"}).to_csv(tmp, index=False)
    write_json(out / "provenance.json", {**provenance(p, study.seed, data_hash), "tokenizer_hash": tok_hash,
                                         "checkpoint": str(ckpt_path)})
    log.info("nondeterminism %s: %.1f s; decode not-equal share %s, flip rate %s, completions differ %s, "
             "invariant control %s", job_name(model_name, dtype, attention, threads), seconds,
             metrics.get("decode_not_equal_share"), metrics.get("decode_flip_rate"), metrics.get("free_differ_rate"),
             metrics.get("control_invariant_not_equal"))
    return metrics
