"""The pretraining loop: AdamW, warm-up + cosine, clipping, accumulation, validation, checkpoints.

`train` runs optimizer steps from `state.step` to `params.steps`, writing a resumable checkpoint
every `params.checkpoint_every` steps. Everything that decides the next step — weights, optimizer
moments, the step, the global torch RNG (dropout) and the data generator (window offsets) — is in
the checkpoint, so on the CPU an interrupted run resumed from it ends with bitwise the same
weights as one that never stopped (same thread count: 1 vs 2 threads changes fp32 bits). How the
train stage calls it (`tests/test_train.py` runs it on a tiny corpus)::

    state = new_state(config, params, seed=0, device=torch.device("cpu"))
    outcome = train(state, train_data, val_data, params, checkpoint_path=Path("last.pt"),
                    tokenizer_hash="ab12", seed=0)
    assert outcome.step == params.steps
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nextlab.config import TrainParams
from nextlab.errors import NextlabError
from nextlab.model import GPT, GPTConfig
from nextlab.model import device as dev
from nextlab.model.checkpoint import model_from_checkpoint, save_checkpoint, unwrap
from nextlab.progress import bar as progress_bar
from nextlab.train import distributed
from nextlab.train.batches import TokenData
from nextlab.train.schedule import lr_at

log = logging.getLogger(__name__)

# Train params that change the trajectory; a checkpoint made with other values cannot be resumed.
# (How often to evaluate, checkpoint or log does not change the weights, nor does the device choice.)
TRAJECTORY_KEYS = (
    "steps", "batch_size", "grad_accum", "lr", "min_lr_ratio", "warmup_steps", "weight_decay",
    "beta1", "beta2", "grad_clip",
)


# Steps per logged window on a GPU (see `train`): one host-device sync per window, not per step.
LOG_WINDOW = 10


def trajectory_config(params: TrainParams, seed: int) -> dict[str, Any]:
    full = params.model_dump(mode="json")
    return {"seed": seed, **{key: full[key] for key in TRAJECTORY_KEYS}}


def seeds(seed: int) -> dict[str, int]:
    """Independent streams, so e.g. more validation batches never shift the training windows."""
    return {"init": seed, "data": seed + 1, "val": seed + 2, "dropout": seed + 3}


@dataclass
class TrainState:
    model: GPT
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator
    device: torch.device
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0  # time inside timed optimizer steps, summed over resumed segments
    timed_steps: int = 0  # steps in train_seconds (each process's first step is warm-up, untimed)
    tokens: int = 0

    def counters(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "timed_steps": self.timed_steps, "tokens": self.tokens}

    def rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def set_rng_state(self, rng: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(rng["torch"])
        self.data_generator.set_state(rng["data"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)


def make_optimizer(model: GPT, params: TrainParams, device: torch.device) -> torch.optim.AdamW:
    """The model's AdamW with the train params' settings, fused on CUDA."""
    return model.configure_optimizer(params.lr, params.weight_decay, (params.beta1, params.beta2),
                                     fused=device.type == "cuda")


def new_state(config: GPTConfig, params: TrainParams, seed: int, device: torch.device) -> TrainState:
    """A freshly initialised model and optimizer, seeded."""
    s = seeds(seed)
    torch.manual_seed(s["dropout"])
    model = GPT(config, generator=torch.Generator().manual_seed(s["init"])).to(device)
    return TrainState(
        model=model,
        optimizer=make_optimizer(model, params, device),
        data_generator=torch.Generator().manual_seed(s["data"]),
        device=device,
    )


def resume_state(ckpt: dict[str, Any], params: TrainParams, device: torch.device) -> TrainState:
    """The state a checkpoint written by `train` holds."""
    model = model_from_checkpoint(ckpt, device)
    optimizer = make_optimizer(model, params, device)
    optimizer.load_state_dict(ckpt["optimizer"])
    state = TrainState(model=model, optimizer=optimizer, data_generator=torch.Generator(), device=device,
                       step=int(ckpt["step"]))
    state.set_rng_state(ckpt["rng"])
    extra = ckpt.get("extra") or {}
    state.curve = list(extra.get("curve", []))
    state.train_seconds = float(extra.get("train_seconds", 0.0))
    state.timed_steps = int(extra.get("timed_steps", 0))
    state.tokens = int(extra.get("tokens", 0))
    return state


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module, data: TokenData, batches: int, batch_size: int, block_size: int,
    device: torch.device, seed: int,
) -> float:
    """Mean loss over `batches` random windows, the same windows every call (a fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        x, y = data.batch(batch_size, block_size, generator)
        with dev.autocast(device):
            total += model(x.to(device), y.to(device)).item()
    model.train(was_training)
    return total / batches


@dataclass
class TrainOutcome:
    step: int
    train_loss: float
    val_loss: float | None
    tokens_per_s: float
    ms_per_step: float
    mfu: float | None
    train_seconds: float
    tokens: int
    curve: list[dict[str, Any]]


def optimizer_step(state: TrainState, model: torch.nn.Module, train_data: TokenData, params: TrainParams,
                   ranks: distributed.Ranks, lr: float) -> torch.Tensor:
    """One optimizer step over `params.grad_accum` micro-batches at learning rate `lr`; the global
    batch's mean loss, as a float64 tensor left on the device (reading it would sync a GPU)."""
    raw = state.model
    device = state.device
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    for _ in range(params.grad_accum):
        x, y = train_data.batch(params.batch_size, raw.config.block_size, state.data_generator)
        x, y = dev.to_device(ranks.shard(x), device), dev.to_device(ranks.shard(y), device)
        with dev.autocast(device):
            # The loss outside the wrapped model: torch.compile (CUDA) then compiles the same
            # graph as ever, and its fused kernels cannot change the loss's bits.
            loss = raw.loss(model(x), y) / params.grad_accum
        loss.backward()
        step_loss += loss.detach().double()  # as float64: the sum a Python float would make
    # The logged loss is the whole global batch's (equal shards: the mean of the ranks' means).
    step_loss = distributed.mean(step_loss, ranks)
    if params.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(raw.parameters(), params.grad_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.tokens += params.batch_size * params.grad_accum * raw.config.block_size
    return step_loss


class StepLog:
    """The curve's rows, logged in windows of steps.

    On a GPU the host must not wait for every step: reading the loss (`.item()`) or timing a step
    syncs the device and starves it. Steps are therefore logged in windows: the losses stay on the
    device until the window ends, one sync times the window, and the host builds the next batch
    (pinned, copied without blocking) while the device still computes. On the CPU, where nothing
    is asynchronous, the window is one step and every row is timed on its own.
    """

    def __init__(self, state: TrainState, params: TrainParams, window: int,
                 validate: Callable[[], float | None], record: Callable[[dict[str, Any]], None], bar: Any):
        self.state, self.params, self.window = state, params, window
        self.validate, self.record, self.bar = validate, record, bar
        self.tokens_per_step = params.batch_size * params.grad_accum * state.model.config.block_size
        self.pending: list[tuple[dict[str, Any], torch.Tensor]] = []
        self.train_loss = float("nan")
        self.first_window = True
        self.window_start = time.perf_counter()

    def add(self, row: dict[str, Any], loss: torch.Tensor, *, evaluate: bool, flush: bool) -> None:
        """Queue a step's row; log the window when it is full, or now (`flush`, `evaluate`)."""
        self.pending.append((row, loss))
        if len(self.pending) >= self.window or evaluate or flush:
            self.flush(evaluate=evaluate)

    def flush(self, evaluate: bool = False) -> None:
        """Time and record the pending steps; `evaluate`: validate after the last one (untimed)."""
        if not self.pending:
            return
        state, params, pending = self.state, self.params, self.pending
        losses = torch.stack([loss for _, loss in pending]).tolist()  # one sync for the window
        dev.synchronize(state.device)
        elapsed = time.perf_counter() - self.window_start
        for (row, _), loss in zip(pending, losses):
            if not math.isfinite(loss):
                raise NextlabError(
                    f"training diverged: loss is {loss} at step {row['step']}; lower train.lr "
                    f"(now {params.lr}) or raise train.warmup_steps"
                )
            row["train_loss"] = loss
            row["tokens_per_s"] = self.tokens_per_step * len(pending) / elapsed
        # A process's first step pays for warm-up (allocations, compilation): leave its window out.
        if not self.first_window:
            state.train_seconds += elapsed
            state.timed_steps += len(pending)
        self.first_window = False
        self.train_loss = losses[-1]
        if evaluate:
            pending[-1][0]["val_loss"] = self.validate()
        for row, _ in pending:
            if row["val_loss"] is not None or row["step"] == params.steps:
                log.info("step %d/%d: train loss %.4f, val loss %s, %.0f tokens/s", row["step"], params.steps,
                         row["train_loss"], "n/a" if row["val_loss"] is None else f"{row['val_loss']:.4f}",
                         row["tokens_per_s"])
            self.record(row)
        self.bar.update(len(pending))
        self.bar.set_postfix(loss=f"{self.train_loss:.3f}", tok_s=f"{pending[-1][0]['tokens_per_s']:.0f}")
        pending.clear()
        self.window_start = time.perf_counter()


def train(
    state: TrainState,
    train_data: TokenData,
    val_data: TokenData | None,
    params: TrainParams,
    *,
    checkpoint_path: Path,
    tokenizer_hash: str,
    seed: int,
    compile_model: bool = False,
    peak_flops: float | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    log_window: int | None = None,
    ranks: distributed.Ranks | None = None,
) -> TrainOutcome:
    """Run steps `state.step + 1 .. params.steps`; return the final figures.

    `on_step(row)` sees every curve row (`step`, `lr`, `train_loss`, `tokens_per_s`, and
    `val_loss` on evaluation steps) after it is recorded: the caller's hook for tracking.
    `log_window`: steps per host-device sync (default 1 on the CPU, `LOG_WINDOW` on a GPU).
    The last checkpoint is `checkpoint_path`; the caller writes the final one. Under torchrun
    (`ranks`), each process trains on its rows of every global batch and only rank 0 checkpoints.
    """
    ranks = ranks or distributed.Ranks()
    device = state.device
    raw = state.model
    config = raw.config
    if compile_model and device.type != "cuda":
        log.info("train.compile applies to CUDA only; training uncompiled on %s", device.type)
    net = distributed.wrap(raw, ranks, device)
    model = torch.compile(net) if compile_model and device.type == "cuda" else net
    model.train()
    val_seed = seeds(seed)["val"]
    train_config = params.model_dump(mode="json") | {"seed": seed}

    def validate() -> float | None:
        if val_data is None:
            return None
        # The plain model: every rank computes the same windows, no gradient to synchronise.
        return estimate_loss(raw, val_data, params.eval_batches, params.batch_size, config.block_size,
                             device, val_seed)

    def record(row: dict[str, Any]) -> None:
        state.curve.append(row)
        if on_step is not None:
            on_step(row)

    if state.step == 0 and not state.curve:
        # Step 0: the loss at initialisation, about ln(vocab_size) for a healthy init.
        record({"step": 0, "lr": 0.0, "train_loss": None, "val_loss": validate(), "tokens_per_s": None})

    bar = progress_bar(params.steps, "step", "pretraining", initial=state.step, show=progress)
    steps = StepLog(state, params, log_window or (1 if device.type == "cpu" else LOG_WINDOW), validate, record, bar)
    while state.step < params.steps:
        lr = lr_at(state.step, params.lr, params.steps, params.warmup_steps, params.min_lr_ratio)
        step_loss = optimizer_step(state, model, train_data, params, ranks, lr)
        row: dict[str, Any] = {"step": state.step, "lr": lr, "train_loss": None, "val_loss": None,
                               "tokens_per_s": None}
        evaluating = state.step % params.eval_every == 0 or state.step == params.steps
        checkpointing = state.step % params.checkpoint_every == 0 and state.step < params.steps and ranks.is_main
        steps.add(row, step_loss, evaluate=evaluating, flush=checkpointing)
        if checkpointing:
            save_checkpoint(
                checkpoint_path, raw, tokenizer_hash=tokenizer_hash, step=state.step,
                optimizer=state.optimizer, rng=state.rng_state(), train_config=train_config,
                extra={"curve": state.curve, **state.counters()},
            )
    bar.close()
    return outcome_of(state, steps.train_loss, steps.tokens_per_step, raw.flops_per_token(), peak_flops)


def outcome_of(state: TrainState, train_loss: float, tokens_per_step: int, flops_per_token: float,
               peak_flops: float | None) -> TrainOutcome:
    """The final figures of a run: the last losses, and the speed of its timed steps."""
    timed_steps = max(1, state.timed_steps)
    tokens_per_s = timed_steps * tokens_per_step / state.train_seconds if state.train_seconds > 0 else float("nan")
    mfu = flops_per_token * tokens_per_s / peak_flops if peak_flops else None
    last_val = next((r["val_loss"] for r in reversed(state.curve) if r["val_loss"] is not None), None)
    last_train = next((r["train_loss"] for r in reversed(state.curve) if r["train_loss"] is not None), train_loss)
    return TrainOutcome(
        step=state.step,
        train_loss=last_train,
        val_loss=last_val,
        tokens_per_s=tokens_per_s,
        ms_per_step=1000 * state.train_seconds / timed_steps,
        mfu=mfu,
        train_seconds=state.train_seconds,
        tokens=state.tokens,
        curve=state.curve,
    )


def final_checkpoint(state: TrainState, path: Path, params: TrainParams, seed: int, tokenizer_hash: str,
                     extra: dict[str, Any] | None = None, device: str | None = None) -> None:
    """The finished model. Unlike `last.pt` it holds no timings, so the same params and seed give
    the same bytes on the same machine. `device`: the params' device setting, recorded beside the
    train params it was run with."""
    run = {"seed": seed} | ({"device": device} if device is not None else {})
    save_checkpoint(
        path, unwrap(state.model), tokenizer_hash=tokenizer_hash, step=state.step, optimizer=state.optimizer,
        rng=state.rng_state(), train_config=params.model_dump(mode="json") | run,
        extra={"tokens": state.tokens, **(extra or {})},
    )
