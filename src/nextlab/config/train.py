"""Params of the model shapes and of pretraining."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nextlab.config.base import Section


class ModelParams(Section):
    """One model shape. `models:` in params maps a name (a Snakemake wildcard) to one of these."""

    n_layer: int = Field(4, ge=1, le=128)
    n_head: int = Field(4, ge=1, le=128)
    d_model: int = Field(128, ge=8, le=16384)
    block_size: int = Field(128, ge=8, le=65536, description="context length in tokens")
    positional: Literal["learned", "rotary", "none"] = "learned"
    attention: Literal["sdpa", "explicit"] = "sdpa"
    mlp_ratio: int = Field(4, ge=1, le=16)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = False
    causal: bool = Field(True, description="causal attention; false lets every position see every other "
                                           "(the positions stage's order-blind control, which cannot decode)")

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelParams":
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}"
            )
        if self.positional == "rotary" and (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"rotary positions need an even head size, got d_model/n_head="
                f"{self.d_model // self.n_head}"
            )
        return self


class TrainParams(Section):
    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-3, gt=0, le=1.0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of lr")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    eval_every: int = Field(200, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    processes: int = Field(1, ge=1, le=1024, description="data-parallel processes (torchrun, gloo on the CPU, "
                                                        "NCCL on GPUs); batch_size is the global batch and must "
                                                        "split evenly over them")
    compile: bool = Field(False, description="torch.compile the model (CUDA only)")
    cpu_peak_flops: float | None = Field(
        None, gt=0, description="peak FLOP/s for MFU on the CPU; measured once when unset"
    )

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainParams":
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds steps={self.steps}")
        if self.batch_size % self.processes:
            raise ValueError(f"batch_size={self.batch_size} does not split over processes={self.processes}")
        return self
