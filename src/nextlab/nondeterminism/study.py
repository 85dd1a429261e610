"""The measurement itself: every target prompt alone, then inside random batches; no file I/O.

For one model in one dtype and attention path (one job), `measure` runs, per path (the default
path, then the batch-invariant mode as the positive control):

1. each target alone (batch 1, no padding, no mask): its free-running greedy completion, and the
   logits of that completion teacher forced with and without the KV cache;
2. for every batch size > 1 and padding side: the targets shuffled into batches whose other rows
   are random neighbours (a fresh draw per batch, the same draws for both paths), and the same
   three runs; every row of a target is compared with its alone run;
3. (default path) the run-to-run control: the largest batch size again in the last padding side,
   same batches, compared bitwise with its first run;
4. the repeated-requests experiment: a few prompts, each sent many times, every time inside a
   random batch (random size, padding and neighbours), counting distinct completions;
5. each target alone in float64, the reference its completions are also compared with.

With `target_share` 1 (the default) every row of a batch may be a target: its neighbours are the
other targets of the batch, a random draw, and pool prompts fill what targets leave; at 0.5 a
batch holds at most ceil(b / 2) targets, the rest random pool prompts. Completions per batch size
are what gives the design its power, and a row that is a target costs nothing extra. With padding `none` all rows of a batch share one length: the
targets are grouped by length and the neighbours are pool prompts cut (or joined and cut) to it.

Results come back as tables (pandas DataFrames); `metrics.job_metrics` reduces them to numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from nextlab.config.nondeterminism import NondeterminismParams
from nextlab.nondeterminism.decode import Window, decode_batch, prefill_forced
from nextlab.nondeterminism.measures import compare_logits, first_divergence, top2_margin, truncate, unique_count
from nextlab.nondeterminism.prompts import Prompt

log = logging.getLogger(__name__)

Grader = Callable[[Prompt, list[int]], str | None]  # completion -> "correct" / "wrong" / "abstain"


@dataclass
class Models:
    """The job's models: the default path, its batch-invariant mode, the float64 reference."""

    default: torch.nn.Module
    invariant: torch.nn.Module | None = None
    reference: torch.nn.Module | None = None


@dataclass
class Tables:
    logits: list[dict] = field(default_factory=list)  # one row per target x run, teacher forced
    steps: list[dict] = field(default_factory=list)  # one row per step of those (default path)
    completions: list[dict] = field(default_factory=list)  # one row per target x run, free running
    timing: list[dict] = field(default_factory=list)  # one row per path x measure x batch x padding

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: pd.DataFrame(getattr(self, name)) for name in ("logits", "steps", "completions", "timing")}


@dataclass
class _Alone:
    completion: list[int]  # free-running, truncated after <|eos|>
    forced: list[int]  # the tokens teacher forced in every run (the default path's alone completion)
    logits: dict[str, torch.Tensor]  # measure -> (steps, vocab)
    grade: str | None
    free_logits: torch.Tensor | None = None  # of its own free run, step by step


def _batches(targets: Sequence[int], b: int, padding: str, length: Callable[[int], int],
             pool: Sequence[Prompt], rng: np.random.Generator,
             exclude: Callable[[int], str], share: float = 0.5) -> list[list[tuple[str, int | list[int]]]]:
    """Rows ("target", i) or ("neighbour", tokens), shuffled, in batches of exactly b rows, at
    most ceil(share * b) of them targets."""
    per_batch = max(1, math.ceil(share * b))
    groups: dict[int, list[int]] = {}
    for i in targets:
        groups.setdefault(length(i) if padding == "none" else 0, []).append(i)
    batches = []
    for key in sorted(groups):
        members = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        for start in range(0, len(members), per_batch):
            chunk = members[start : start + per_batch]
            rows: list[tuple[str, int | list[int]]] = [("target", i) for i in chunk]
            need = b - len(chunk)
            if padding == "none":
                rows += [("neighbour", _filler(key, pool, rng)) for _ in range(need)]
            else:
                taken = {exclude(i) for i in chunk}
                order = [j for j in rng.permutation(len(pool)) if pool[j].prompt_id not in taken][:need]
                rows += [("neighbour", list(pool[j].tokens)) for j in order]
            batches.append([rows[j] for j in rng.permutation(len(rows))])
    return batches


def _filler(length: int, pool: Sequence[Prompt], rng: np.random.Generator) -> list[int]:
    """Real tokens of random pool prompts, joined and cut to `length` (a neighbour for `none`)."""
    tokens: list[int] = []
    while len(tokens) < length:
        tokens += list(pool[int(rng.integers(len(pool)))].tokens)
    return tokens[:length]


class Runner:
    """Runs `measure` for one job; see the module docstring."""

    def __init__(self, models: Models, targets: list[Prompt], pool: list[Prompt], params: NondeterminismParams,
                 seed: int, eos_id: int, grader: Grader, window: Window | None = None, repeat: bool = True):
        self.models, self.targets, self.pool, self.p = models, targets, pool, params
        # Past <|eos|> the model starts a new document: with stop_at_eos off every token counts.
        self.eos_id = eos_id if params.stop_at_eos else None
        self.grader, self.seed, self.window, self.repeat = grader, seed, window, repeat
        self.tables = Tables()
        self.alone: dict[str, list[_Alone]] = {}
        self.fp64: list[list[int]] | None = None
        self._kept: dict[tuple, list] = {}  # the first run of the largest batch, for the control

    # ---- one batch -------------------------------------------------------------------------
    def _run_batch(self, model, measure: str, padding: str, rows, alone: list[_Alone]):
        """Per target row: logits (teacher forced) or tokens (free); plus timing numbers."""
        targets = [r for kind, r in rows if kind == "target"]
        is_target = [kind == "target" for kind, _ in rows]
        start, cpu = time.perf_counter(), time.process_time()
        if measure == "prefill":
            prompts = [list(self.targets[r].tokens) if kind == "target" else r for kind, r in rows]
            forced = [alone[r].forced if kind == "target" else None for kind, r in rows]
            out = prefill_forced(model, prompts, forced, padding, self.window)
            got = [logits for logits, t in zip(out, is_target) if t]
            tokens = sum(len(p) + (len(f) if f else 0) for p, f in zip(prompts, forced))
        else:
            prompts = [list(self.targets[r].tokens) if kind == "target" else r for kind, r in rows]
            forced = [alone[r].forced if kind == "target" and measure == "decode" else None for kind, r in rows]
            keep = measure == "decode" or self._derived
            res = decode_batch(model, prompts, padding, self.p.max_new_tokens, self.eos_id, forced=forced,
                               keep_logits=[t and keep for t in is_target], stop_rows=is_target,
                               window=self.window)
            self._free_logits = [r.logits for r, t in zip(res, is_target) if t and measure == "free"]
            tokens = sum(len(r.tokens) for r in res)
            got = [r.logits if measure == "decode" else r.tokens for r, t in zip(res, is_target) if t]
        return targets, got, (time.perf_counter() - start, time.process_time() - cpu, tokens)

    # ---- alone -----------------------------------------------------------------------------
    def _alone(self, model) -> list[_Alone]:
        forced_by = self.alone.get("default")
        result = []
        for i, prompt in enumerate(self.targets):
            free = decode_batch(model, [list(prompt.tokens)], "none", self.p.max_new_tokens, self.eos_id,
                                keep_logits=[True], window=self.window)[0]
            completion = truncate(free.tokens, self.eos_id)
            forced = forced_by[i].forced if forced_by else completion
            entry = _Alone(completion, forced, {}, self.grader(prompt, completion), free.logits[: len(completion)])
            if forced_by is None and "decode" in self.p.cache_modes:
                # Forcing a prompt's own greedy tokens alone is its free run, step for step.
                entry.logits["decode"] = free.logits[: len(completion)]
            result.append(entry)
        for measure in self.p.cache_modes:
            for i in range(len(self.targets)):
                if measure not in result[i].logits:
                    _, got, _ = self._run_batch(model, measure, "none", [("target", i)], result)
                    result[i].logits[measure] = got[0]
        return result

    # ---- the sweep -------------------------------------------------------------------------
    @property
    def _derived(self) -> bool:
        """The KV-cache measure is read off the free runs (see `_derive_decode`)."""
        return self.p.decode_from_free and "decode" in self.p.cache_modes

    def _derive_decode(self, targets: list[int], tokens: list, alone: list[_Alone]) -> tuple[list, dict]:
        """Until it parts from the alone completion, a free run feeds exactly the alone tokens: its
        logits up to and including the first divergence are the teacher-forced ones, with the
        cache, in that very batch. Returns those logits and the alone ones they compare with."""
        got, refs = [], {}
        for k, (i, toks, logits) in enumerate(zip(targets, tokens, self._free_logits)):
            div = first_divergence(toks, alone[i].completion, self.eos_id)
            n = len(alone[i].completion) if div is None else div + 1
            n = min(n, logits.size(0), alone[i].free_logits.size(0))
            got.append(logits[:n])
            refs[k] = alone[i].free_logits[:n]
        return got, refs

    def _record(self, path: str, measure: str, b: int, padding: str, run: str, targets: list[int],
                got: list, alone: list[_Alone], refs: dict | None = None) -> None:
        if run == "repeat":  # the run-to-run control is compared with the first run, not alone
            return
        for k, (i, value) in enumerate(zip(targets, got)):
            prompt = self.targets[i]
            base = {"path": path, "measure": measure, "batch_size": b, "padding": padding, "run": run,
                    "prompt_id": prompt.prompt_id, "kind": prompt.kind}
            if measure == "free":
                div = first_divergence(value, alone[i].completion, self.eos_id)
                grade = self.grader(prompt, value)
                fp64 = self.fp64[i] if self.fp64 is not None else None
                self.tables.completions.append({
                    **base,
                    "completion": " ".join(map(str, value)),
                    "tokens": len(value),
                    "differs": div is not None,
                    "first_divergence": -1 if div is None else div,
                    "differs_fp64": None if fp64 is None else first_divergence(value, fp64, self.eos_id) is not None,
                    "grade": grade,
                    "grade_alone": alone[i].grade,
                    "grade_changed": None if grade is None else grade != alone[i].grade,
                })
                continue
            cmp = compare_logits(refs[k] if refs is not None else alone[i].logits[measure], value)
            flips = cmp.flip.nonzero().flatten().tolist()
            self.tables.logits.append({
                **base,
                "steps": int(cmp.flip.numel()),
                "steps_not_equal": int(cmp.not_equal.sum()),
                "max_abs_diff": float(cmp.max_abs.max()) if cmp.flip.numel() else 0.0,
                "mean_abs_diff": float(cmp.mean_abs.mean()) if cmp.flip.numel() else 0.0,
                "flips": len(flips),
                "first_flip": flips[0] if flips else -1,
                "min_margin": float(cmp.margin.min()) if cmp.flip.numel() else math.inf,
            })
            if path == "default" and run == "first":
                for s in range(cmp.flip.numel()):
                    self.tables.steps.append({
                        "measure": measure, "batch_size": b, "padding": padding, "prompt_id": prompt.prompt_id,
                        "kind": prompt.kind, "step": s, "margin": float(cmp.margin[s]),
                        "max_abs_diff": float(cmp.max_abs[s]), "not_equal": bool(cmp.not_equal[s]),
                        "flip": bool(cmp.flip[s]),
                    })

    def _sweep(self, path: str, model, sizes: Sequence[int], run: str = "first") -> None:
        alone = self.alone[path]
        measures = [m for m in self.p.cache_modes if not (m == "decode" and self._derived)] + ["free"]
        for b in sizes:
            # The run-to-run control reruns one padding side (the last listed): it asks whether the
            # same batch gives the same bits twice, which one side answers as well as three.
            for padding in (self.p.paddings if run != "repeat" else self.p.paddings[-1:]):
                for measure in measures:
                    # The same draws for every path and run: a seed per (batch size, padding, measure).
                    rng = np.random.default_rng([self.seed, 7, b, self.p.paddings.index(padding),
                                                 measures.index(measure)])
                    if measure == "prefill":
                        length = lambda i: len(self.targets[i].tokens) + len(alone[i].forced) - 1  # noqa: E731
                    else:
                        length = lambda i: len(self.targets[i].tokens)  # noqa: E731
                    batches = _batches(range(len(self.targets)), b, padding, length, self.pool, rng,
                                       lambda i: self.targets[i].prompt_id, self.p.target_share)
                    wall = cpu = tokens = 0.0
                    for rows in batches:
                        targets, got, (w, c, n) = self._run_batch(model, measure, padding, rows, alone)
                        wall, cpu, tokens = wall + w, cpu + c, tokens + n
                        self._record(path, measure, b, padding, run, targets, got, alone)
                        if measure == "free" and self._derived and run == "first":
                            derived, refs = self._derive_decode(targets, got, alone)
                            self._record(path, "decode", b, padding, run, targets, derived, alone, refs)
                        key = (measure, b, padding)
                        if (run == "first" and b == sizes[-1] and path == "default"
                                and padding == self.p.paddings[-1]):
                            self._kept.setdefault(key, []).append((targets, got))
                        elif run == "repeat":
                            self._compare_repeat(key, targets, got)
                    self.tables.timing.append({"path": path, "measure": measure, "batch_size": b,
                                               "padding": padding, "run": run, "batches": len(batches),
                                               "seconds": wall, "cpu_seconds": cpu, "tokens": int(tokens)})

    def _compare_repeat(self, key: tuple, targets: list[int], got: list) -> None:
        first_targets, first_got = self._kept[key].pop(0)
        assert first_targets == targets, "the control must rerun the very same batches"
        measure, b, padding = key
        for i, a, c in zip(targets, first_got, got):
            if measure == "free":
                equal = list(a) == list(c)
                steps, not_equal = 1, int(not equal)
            else:
                cmp = compare_logits(a, c)
                steps, not_equal = int(cmp.flip.numel()), int(cmp.not_equal.sum())
            self.tables.logits.append({
                "path": "default", "measure": measure, "batch_size": b, "padding": padding, "run": "control",
                "prompt_id": self.targets[i].prompt_id, "kind": self.targets[i].kind, "steps": steps,
                "steps_not_equal": not_equal, "max_abs_diff": math.nan, "mean_abs_diff": math.nan,
                "flips": 0, "first_flip": -1, "min_margin": math.nan,
            })

    # ---- repeated requests -----------------------------------------------------------------
    def _repeats(self, path: str, model) -> None:
        p, alone = self.p, self.alone[path]
        if not p.repeat_prompts or not self.repeat:
            return
        requests = p.repeat_requests if path == "default" else min(p.repeat_requests, p.invariant_repeat_requests)
        # The prompts whose alone completion came closest to a tie: where batching can flip most.
        margins = [float(top2_margin(a.logits[p.cache_modes[0]]).min()) for a in alone]
        chosen = sorted(range(len(self.targets)), key=lambda i: (margins[i], i))[: p.repeat_prompts]
        sizes = list(p.repeat_batch_sizes or [b for b in p.batch_sizes if b > 1] or [1])
        rng = np.random.default_rng([self.seed, 8])
        pending = {i: requests for i in chosen}
        start = time.perf_counter()
        while any(pending.values()):
            b = int(sizes[int(rng.integers(len(sizes)))])
            padding = p.paddings[int(rng.integers(len(p.paddings)))]
            # Requests still to send, several of one prompt possibly in one batch (as a server
            # sees them), at most half the rows: the rest are random neighbours.
            open_ = [i for i in chosen for _ in range(pending[i])]
            group = [open_[j] for j in rng.permutation(len(open_))][: max(1, math.ceil(p.repeat_share * b))]
            batch = _batches(group, b, padding, lambda i: len(self.targets[i].tokens), self.pool, rng,
                             lambda i: self.targets[i].prompt_id, p.repeat_share)
            for rows in batch:
                targets, got, _ = self._run_batch(model, "free", padding, rows, alone)
                for i, tokens in zip(targets, got):
                    pending[i] -= 1
                    self._record(path, "free", b, padding, "repeat_requests", [i], [tokens], alone)
        log.info("%s: %d repeated requests in %.1f s", path, len(chosen) * requests,
                 time.perf_counter() - start)

    # ---- everything ------------------------------------------------------------------------
    def measure(self) -> Tables:
        p, m = self.p, self.models
        if m.reference is not None:
            self.fp64 = [truncate(decode_batch(m.reference, [list(t.tokens)], "none", p.max_new_tokens,
                                               self.eos_id, window=self.window)[0].tokens, self.eos_id)
                         for t in self.targets]
        paths = [("default", m.default)] + ([("invariant", m.invariant)] if m.invariant is not None else [])
        sizes = [b for b in p.batch_sizes if b > 1]
        for path, model in paths:
            start = time.perf_counter()
            self.alone[path] = self._alone(model)
            self._record_alone(path)
            self._sweep(path, model, sizes)
            if path == "default" and sizes:
                self._sweep(path, model, sizes[-1:], run="repeat")
            self._repeats(path, model)
            log.info("%s path: %.1f s", path, time.perf_counter() - start)
        return self.tables

    def _record_alone(self, path: str) -> None:
        """Batch-1 rows: the alone completion (vs float64) and prefill vs decode with the cache."""
        alone = self.alone[path]
        for i, a in enumerate(alone):
            prompt = self.targets[i]
            fp64 = self.fp64[i] if self.fp64 is not None else None
            self.tables.completions.append({
                "path": path, "measure": "free", "batch_size": 1, "padding": "none", "run": "first",
                "prompt_id": prompt.prompt_id, "kind": prompt.kind, "completion": " ".join(map(str, a.completion)),
                "tokens": len(a.completion), "differs": False, "first_divergence": -1,
                "differs_fp64": None if fp64 is None else first_divergence(a.completion, fp64, self.eos_id) is not None,
                "grade": a.grade, "grade_alone": a.grade, "grade_changed": None if a.grade is None else False,
            })
            if {"prefill", "decode"} <= set(a.logits):
                cmp = compare_logits(a.logits["prefill"], a.logits["decode"])
                self.tables.logits.append({
                    "path": path, "measure": "prefill_vs_decode", "batch_size": 1, "padding": "none",
                    "run": "first", "prompt_id": prompt.prompt_id, "kind": prompt.kind,
                    "steps": int(cmp.flip.numel()), "steps_not_equal": int(cmp.not_equal.sum()),
                    "max_abs_diff": float(cmp.max_abs.max()) if cmp.flip.numel() else 0.0,
                    "mean_abs_diff": float(cmp.mean_abs.mean()) if cmp.flip.numel() else 0.0,
                    "flips": int(cmp.flip.sum()), "first_flip": -1, "min_margin": float(cmp.margin.min()),
                })


def unique_completions(completions: pd.DataFrame, eos_id: int | None) -> pd.DataFrame:
    """Per path and repeated prompt: requests, distinct completions, and whether the alone one is among them."""
    rows = []
    reps = completions[completions["run"] == "repeat_requests"]
    for (path, prompt_id), group in reps.groupby(["path", "prompt_id"], sort=True):
        tokens = [[int(t) for t in c.split()] for c in group["completion"]]
        rows.append({"path": path, "prompt_id": prompt_id, "requests": len(group),
                     "unique": unique_count(tokens, eos_id), "differ_from_alone": int(group["differs"].sum())})
    return pd.DataFrame(rows, columns=["path", "prompt_id", "requests", "unique", "differ_from_alone"])
