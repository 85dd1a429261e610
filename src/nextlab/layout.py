"""Where a study's results live: every path under `results/<study>/`, named once.

The workflow's rules declare these paths as their outputs and inputs, the report reads them, and
docs/formats.md describes what is in each file. A path is a template: `{model}`, `{scheme}`,
`{seed}`, ... are the fields a job fills (Snakemake's wildcards in the rules)::

    results/<study>/
    ├── data/                      world.json, corpus/{train,val}.jsonl, qa.parquet, stats.json
    ├── tokenizer/                 tokenizer.json, train.npy, val.npy, stats.json
    ├── models/<model>/
    │   ├── pretrain/              ckpt.pt, metrics.json, curve.csv, loss.png, facts.csv
    │   ├── sft/                   ckpt.pt, metrics.json, curve.csv
    │   ├── sft_confidence/        the same files: the calibrated scheme's start
    │   ├── posttrain/<scheme>/seed<k>/            ckpt.pt, metrics.json, steps.csv, timing.csv
    │   └── posttrain_invariant/<scheme>/seed<k>/  the same files, through invariant kernels
    ├── evaluate/<model>/
    │   ├── <scheme>/seed<k>/      answers.parquet, metrics.json
    │   └── summary/               metrics.json, summary.parquet, answers.parquet, figures/
    ├── nondeterminism/<model>/
    │   ├── <dtype>/<attention>/threads<k>/   <table>.parquet, metrics.json, env.json, ...
    │   └── summary/               metrics.json, figures/
    ├── mechanisms/<model>/        <table>.parquet, metrics.json, provenance.json
    ├── positions/<model>/<variant>/          ckpt.pt, <table>.parquet, metrics.json, ...
    └── agent/<model>/             ckpt.pt, episodes.parquet, curve.parquet, metrics.json, ...

A template names a folder (`PRETRAIN`) or a file in one (`PRETRAIN_CURVE`); `.format` fills it::

    >>> PRETRAIN_CURVE.format(model="tiny")
    'models/tiny/pretrain/curve.csv'
    >>> POSTTRAIN.format(model="tiny", scheme="binary", seed=1)
    'models/tiny/posttrain/binary/seed1'

`fill` fills some fields and keeps the others, to rename one or to leave it to a later step::

    >>> fill(POSTTRAIN, scheme="{control}")
    'models/{model}/posttrain/{control}/seed{seed}'
    >>> fields(NONDETERMINISM_JOB)
    ['model', 'dtype', 'attention', 'threads']

A nondeterminism job's folder below its model is one name for the report (`{ndjob}`)::

    >>> nd_job("float32", "sdpa", 2)
    'float32/sdpa/threads2'
    >>> NONDETERMINISM.format(model="tiny", ndjob=nd_job("float32", "sdpa", 2))
    'nondeterminism/tiny/float32/sdpa/threads2'
"""

from __future__ import annotations

import string

# ---- data and tokenizer (one per study) ---------------------------------------------------------
DATA = "data"
WORLD = f"{DATA}/world.json"
CORPUS_TRAIN = f"{DATA}/corpus/train.jsonl"
CORPUS_VAL = f"{DATA}/corpus/val.jsonl"
QA = f"{DATA}/qa.parquet"
DATA_STATS = f"{DATA}/stats.json"

TOKENIZER = "tokenizer"
TOKENIZER_FILE = f"{TOKENIZER}/tokenizer.json"
TOKENS_TRAIN = f"{TOKENIZER}/train.npy"
TOKENS_VAL = f"{TOKENIZER}/val.npy"
TOKENIZER_STATS = f"{TOKENIZER}/stats.json"

# ---- models: pretrained, fine-tuned, post-trained -----------------------------------------------
MODELS = "models"
PRETRAIN = f"{MODELS}/{{model}}/pretrain"
PRETRAIN_CURVE = f"{PRETRAIN}/curve.csv"
PRETRAIN_FACTS = f"{PRETRAIN}/facts.csv"
PRETRAIN_METRICS = f"{PRETRAIN}/metrics.json"
PRETRAIN_PROVENANCE = f"{PRETRAIN}/provenance.json"
SFT = f"{MODELS}/{{model}}/sft"
SFT_CONFIDENCE = f"{MODELS}/{{model}}/sft_confidence"
POSTTRAIN = f"{MODELS}/{{model}}/posttrain/{{scheme}}/seed{{seed}}"
POSTTRAIN_STEPS = f"{POSTTRAIN}/steps.csv"
# The exactly on-policy control: a scheme post-trained again through the batch-invariant kernels.
POSTTRAIN_INVARIANT = f"{MODELS}/{{model}}/posttrain_invariant/{{scheme}}/seed{{seed}}"

# ---- evaluation and the studies of trained models -----------------------------------------------
EVALUATE = "evaluate/{model}/{scheme}/seed{seed}"
EVALUATE_ANSWERS = f"{EVALUATE}/answers.parquet"
EVALUATE_SUMMARY = "evaluate/{model}/summary"
EVALUATE_SUMMARY_TABLE = f"{EVALUATE_SUMMARY}/summary.parquet"
EVALUATE_SUMMARY_ANSWERS = f"{EVALUATE_SUMMARY}/answers.parquet"

ND_JOB = "{dtype}/{attention}/threads{threads}"
NONDETERMINISM = "nondeterminism/{model}/{ndjob}"
NONDETERMINISM_JOB = f"nondeterminism/{{model}}/{ND_JOB}"
NONDETERMINISM_SUMMARY = "nondeterminism/{model}/summary"

MECHANISMS = "mechanisms/{model}"
POSITIONS = "positions/{model}/{variant}"
AGENT = "agent/{model}"

# A summary's figures, beside its tables.
FIGURES = "figures/{name}.png"


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **values: object) -> str:
    """The template with the given fields filled and every other field kept as it is."""
    return string.Formatter().vformat(template, (), _Keep(values))


def fields(template: str) -> list[str]:
    """The template's fields, each once, in order."""
    return list(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))


def top(path: str) -> str:
    """The folder of `results/<study>/` a path is in (one per stage, `models` for the trainers').

    >>> top(PRETRAIN_CURVE), top(EVALUATE_SUMMARY_TABLE)
    ('models', 'evaluate')
    """
    return path.split("/", 1)[0]


def nd_job(dtype: str, attention: str, threads: int | str) -> str:
    """A nondeterminism job's folder under its model's: `<dtype>/<attention>/threads<k>`."""
    return ND_JOB.format(dtype=dtype, attention=attention, threads=threads)
