"""Will a study fit this machine's memory? An estimate per stage from the params alone, checked
before any job runs, so a value the schema allows but the machine cannot hold (a batch of a
billion sequences) stops the study with the key to change instead of failing hours later.

The estimates are deliberately rough upper bounds from the sizes the params give (documents and
their characters, model parameters and activations); a study is refused only when an estimate
exceeds the memory available now (`MemAvailable`), so a real study is never refused for the
estimate's slack.

    >>> from nextlab.config import Study
    >>> estimates = estimate_memory(Study())
    >>> estimates["train/small"].bytes < 2**30       # the default study's pretraining: well under 1 GiB
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextlab.errors import ParamsError

# Python's cost of one corpus document held in memory (its dict, text object, span lists), and
# of one token while the tokenizer encodes a batch (HF `Encoding`: ids, offsets, masks, strings).
DOCUMENT_OVERHEAD_BYTES = 1_000
CHARS_PER_FACT_SENTENCE = 60
TOKEN_ENCODING_BYTES = 100
FLOAT = 4
QUESTION_TOKENS = 32  # a question prompt of the synthetic world, with room to spare
CANDIDATE_PROMPTS = 16  # questions whose candidate values are scored in one batch (`qa.answers`)
# Floats of activations kept per token and layer for the backward pass of a pre-norm GPT block
# (qkv, attention output, two norms, the 4x MLP's input and GELU, residuals), per unit of d_model.
ACTIVATION_FLOATS_PER_D = 24


@dataclass(frozen=True)
class Estimate:
    what: str
    bytes: float
    keys: tuple[str, ...]  # the params that drive it, for the message

    def text(self) -> str:
        return f"{self.what} needs about {_size(self.bytes)} (driven by {', '.join(self.keys)})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def model_parameters(shape: Any, vocab_size: int) -> int:
    """Weights of a GPT of this shape (tied embeddings, as `nextlab.model.GPT`)."""
    d, layers = shape.d_model, shape.n_layer
    per_block = (3 + 1 + 2 * shape.mlp_ratio) * d * d + 4 * d
    positions = shape.block_size * d if shape.positional == "learned" else 0
    return vocab_size * d + positions + layers * per_block + d


def _activations(shape: Any, vocab_size: int, sequences: int, tokens: int) -> float:
    per_token = shape.n_layer * ACTIVATION_FLOATS_PER_D * shape.d_model + 3 * vocab_size
    attention = 0
    if shape.attention == "explicit":
        attention = 2 * shape.n_layer * shape.n_head * tokens  # the (T x T) scores, per token
    return FLOAT * sequences * tokens * (per_token + attention)


def estimate_memory(study: Any) -> dict[str, Estimate]:
    """Peak memory of each stage's biggest job, keyed `<stage>` or `<stage>/<model>`."""
    data = study.data
    vocab = study.tokenizer.vocab_size
    estimates: dict[str, Estimate] = {}

    people = data.n_people if data.synthetic else 0
    mean_mentions = sum(k * frac for k, frac in data.mention_mix.items())
    documents = people * (mean_mentions + data.val_mentions) + (people + data.n_unseen) * len(data.attributes)
    chars = documents * CHARS_PER_FACT_SENTENCE * len(data.attributes)
    estimates["data"] = Estimate("the data stage's corpus", documents * DOCUMENT_OVERHEAD_BYTES + 4 * chars,
                                 ("data.n_people", "data.mention_mix", "data.n_unseen"))
    tokens = chars / 3  # a byte-level BPE of this vocabulary size packs 3-5 characters per token
    estimates["tokenize"] = Estimate("tokenizing the corpus", tokens * TOKEN_ENCODING_BYTES + 2 * chars,
                                     ("data.n_people", "data.mention_mix"))

    train, post, ev = study.train, study.posttrain, study.evaluate
    for name, shape in study.models.items():
        weights = model_parameters(shape, vocab)
        optimizer_state = 4 * FLOAT * weights  # weights, gradients, two AdamW moments
        estimates[f"train/{name}"] = Estimate(
            f"pretraining model {name!r}",
            optimizer_state + _activations(shape, vocab, train.batch_size, shape.block_size),
            ("train.batch_size", f"models.{name}.block_size", f"models.{name}.d_model"),
        )
        answers = post.questions_per_step * post.group_size
        qa_tokens = min(shape.block_size, QUESTION_TOKENS + post.max_answer_tokens)
        estimates[f"posttrain/{name}"] = Estimate(
            f"post-training model {name!r}",
            optimizer_state + 2 * _activations(shape, vocab, answers, qa_tokens),  # policy and reference
            ("posttrain.questions_per_step", "posttrain.group_size", "posttrain.max_answer_tokens"),
        )
        # Inference keeps no activations: the weights, one layer's MLP at a time, and the logits.
        candidates = CANDIDATE_PROMPTS * (data.values_per_attribute + 1) if ev.candidates else 0
        rows = max(ev.batch_size, candidates) * min(shape.block_size, QUESTION_TOKENS + ev.max_answer_tokens)
        estimates[f"evaluate/{name}"] = Estimate(
            f"evaluating model {name!r}",
            FLOAT * weights + FLOAT * rows * (shape.mlp_ratio * shape.d_model + 2 * vocab),
            ("evaluate.batch_size", "data.values_per_attribute", "tokenizer.vocab_size"),
        )
    return estimates


def available_memory() -> int | None:
    """Bytes of memory available now (Linux `MemAvailable`); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(study: Any, source: str = "<params>", available: int | None = None) -> None:
    """Raise `ParamsError` naming the params that drive every estimate above the memory available."""
    available = available if available is not None else available_memory()
    if available is None:
        return
    too_big = [e for e in estimate_memory(study).values() if e.bytes > available]
    if too_big:
        lines = [e.text() for e in too_big]
        raise ParamsError(f"{source}: the study does not fit this machine's memory ({_size(available)} available): "
                          + "; ".join(lines))
