"""Params of the nondeterminism stage: which factors to sweep and how many prompts and requests.

Job-level factors (one Snakemake job each, per model): `dtypes` x `attention` x `threads`.
Within a job: every batch size x padding side, teacher forced with and without a KV cache
(`prefill` = one forward pass over the whole sequence, `decode` = one token at a time with the
cache) and free-running greedy decoding; then the controls and the repeated-requests experiment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nextlab.config.base import Section

DTYPES = ("float32", "bfloat16", "float16")
PADDINGS = ("none", "left", "right")
ATTENTION_PATHS = ("sdpa", "explicit")
CACHE_MODES = ("prefill", "decode")
# What a job and a model's summary write (the workflow plans its files from these names).
TABLES = ("prompts", "logits", "steps", "completions", "unique", "timing")
FIGURES = ("rates_vs_batch", "logit_diff", "first_divergence", "unique_completions", "flips_vs_margin",
           "invariant_cost")


def _unique(value: tuple, what: str) -> tuple:
    if len(set(value)) != len(value):
        raise ValueError(f"{what} repeat: {list(value)}")
    return value


class NondeterminismParams(Section):
    batch_sizes: tuple[int, ...] = Field(
        (1, 2, 3, 4, 8, 12, 16, 32, 64), min_length=1,
        description="batch sizes each prompt is decoded in; batch 1 (alone) is always the reference",
    )
    paddings: tuple[Literal["none", "left", "right"], ...] = Field(PADDINGS, min_length=1)
    cache_modes: tuple[Literal["prefill", "decode"], ...] = Field(
        CACHE_MODES, min_length=1, description="teacher-forced logits without / with a KV cache"
    )
    decode_from_free: bool = Field(
        True, description="read the KV-cache (decode) measure off the free runs up to their first divergence, "
        "where they feed the alone tokens, instead of a separate teacher-forced run (half the cost)",
    )
    dtypes: tuple[Literal["float32", "bfloat16", "float16"], ...] = Field(
        ("float32", "bfloat16"), min_length=1, description="one job each; the CPU runs float32 and bfloat16"
    )
    attention: tuple[Literal["sdpa", "explicit"], ...] = Field(
        ATTENTION_PATHS, min_length=1, description="the default path's attention kernel; one job each"
    )
    threads: tuple[int, ...] = Field(
        (1, 2), min_length=1, description="torch intra-op threads; one job each (bits change with threads)"
    )
    checkpoint: Literal["pretrain", "sft"] = Field("sft", description="which checkpoint of each model")
    qa_prompts: int = Field(10, ge=0, description="evaluation questions decoded as targets")
    bio_prompts: int = Field(8, ge=0, description="biography openings decoded as targets")
    unseen_prompts: int = Field(8, ge=0, description="biography openings of never-seen names decoded as targets")
    bio_prompt_words: int = Field(2, ge=1, le=8, description="words of the opening after the name")
    max_new_tokens: int = Field(
        128, ge=1, le=1024,
        description="greedy tokens per completion; past the model's context it restarts from the last half",
    )
    stop_at_eos: bool = Field(
        False, description="end a completion at <|eos|>; false: decode on into the next document (uncertain ground)"
    )
    target_share: float = Field(
        1.0, gt=0, le=1, description="at most this share of a sweep batch's rows are targets; the rest random prompts"
    )
    repeat_prompts: int = Field(4, ge=0, description="prompts sent as many requests (unique completions)")
    repeat_requests: int = Field(1000, ge=1, description="requests per repeated prompt, each in a random batch")
    repeat_batch_sizes: tuple[int, ...] = Field(
        (), description="batch sizes a request may meet (e.g. a loaded server's 16-64); empty: batch_sizes"
    )
    repeat_share: float = Field(0.75, gt=0, le=1, description="at most this share of a request batch is requests")
    repeat_job: str | None = Field(
        None,
        description="the one job (dtype/attention/threads<k>) that sends the repeated requests; null: every job",
    )
    invariant_repeat_requests: int = Field(
        100, ge=1, description="requests per repeated prompt for the batch-invariant control (it must give 1)"
    )
    invariant_control: bool = Field(
        True, description="run the batch-invariant mode as a positive control (in the first attention path and thread count's jobs)"
    )
    float64_reference: bool = Field(True, description="decode each target alone in float64 too")

    @field_validator("batch_sizes")
    @classmethod
    def _sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [b for b in value if b < 1]
        if bad:
            raise ValueError(f"batch sizes must be >= 1, got {bad}")
        return tuple(sorted(_unique(value, "batch sizes")))

    @field_validator("repeat_batch_sizes")
    @classmethod
    def _repeat_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [b for b in value if b < 1]
        if bad:
            raise ValueError(f"batch sizes must be >= 1, got {bad}")
        return tuple(sorted(_unique(value, "repeat batch sizes")))

    @model_validator(mode="after")
    def _repeat_job_is_a_job(self) -> "NondeterminismParams":
        jobs = [f"{d}/{a}/threads{t}" for d in self.dtypes for a in self.attention for t in self.threads]
        if self.repeat_job is not None and self.repeat_prompts and self.repeat_job not in jobs:
            raise ValueError(f"repeat_job {self.repeat_job!r} is not one of the study's jobs ({', '.join(jobs)}); "
                             "name one, or null for every job")
        return self

    def sends_repeats(self, dtype: str, attention: str, threads: int) -> bool:
        return self.repeat_job is None or self.repeat_job == f"{dtype}/{attention}/threads{threads}"

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [t for t in value if t < 1 or t > 1024]
        if bad:
            raise ValueError(f"thread counts must be between 1 and 1024, got {bad}")
        return _unique(value, "thread counts")

    @field_validator("paddings", "cache_modes", "dtypes", "attention")
    @classmethod
    def _no_repeats(cls, value: tuple, info) -> tuple:
        return _unique(value, info.field_name)
