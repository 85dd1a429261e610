"""The bad-input catalogue: each case goes through a real entry point (Snakemake parsing the
Snakefile, or a `nextlab` subcommand) next to a finished smoke study, and must

* exit non-zero with one line that names the bad key, flag or file, and no traceback;
* stop before any work (the job's output folder is never created);
* leave every finished result byte-identical.

The cases run two at a time (they are separate processes) and are checked one test each.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run

pytestmark = pytest.mark.e2e

@dataclass(frozen=True)
class Case:
    id: str
    entry: str  # "snakemake": the workflow parses a params file; "cli": a nextlab subcommand
    expect: str  # the message must contain this (the key, flag or file it names)
    params: Callable[[str], str] | None = None  # smoke params text -> bad params text
    argv: Callable[[Path], list[str]] | None = None  # case folder -> nextlab argv
    setup: Callable[[Path, Path], None] | None = None  # (case folder, project) -> files the case reads


def _set(key_line: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(key_line, new, 1) if key_line in text else text + "\n" + new + "\n"


def _corpus(files: dict[str, bytes]) -> Callable[[Path, Path], None]:
    def make(case: Path, project: Path) -> None:
        for name, content in files.items():
            (case / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
            (case / "corpus" / name).write_bytes(content)
    return make


def _data(line: str) -> Callable[[str], str]:
    """A line added to the smoke params' `data:` section."""
    return _set("  n_unseen: 16", f"  n_unseen: 16\n{line}")


def _user_corpus(mode: str = "add") -> Callable[[str], str]:
    return _data(f"  user_corpus: {{path: CASE/corpus, mode: {mode}}}")


def _copy_inputs(case: Path, project: Path) -> None:
    results = project / "results" / "smoke"
    for folder in ("data", "tokenizer"):
        shutil.copytree(results / folder, case / folder)
    shutil.copy(results / "models/tiny/sft/ckpt.pt", case / "ckpt.pt")


def _then(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def both(case: Path, project: Path) -> None:
        for step in steps:
            step(case, project)
    return both


def _write(name: str, content: bytes) -> Callable[[Path, Path], None]:
    def write(case: Path, project: Path) -> None:
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        (case / name).write_bytes(content)
    return write


def _truncate(name: str, keep: int) -> Callable[[Path, Path], None]:
    def cut(case: Path, project: Path) -> None:
        (case / name).write_bytes((case / name).read_bytes()[:keep])
    return cut


def _evaluate(case: Path, *extra: str) -> list[str]:
    args = {"--model": "tiny", "--scheme": "none", "--seed": "0", "--ckpt": str(case / "ckpt.pt"),
            "--data": str(case / "data"), "--tokenizer": str(case / "tokenizer"), "--out": str(case / "out")}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    return ["evaluate", "--params", "params/smoke.yaml", *[x for kv in args.items() for x in kv]]


def _train(case: Path, *extra: str) -> list[str]:
    return ["train", "--params", "params/smoke.yaml", "--model", "tiny", "--tokens", str(case / "tokenizer"),
            "--out", str(case / "out"), *extra]


CASES = [
    # ---- params, as the workflow reads them before any job -------------------------------------
    Case("duplicate-key", "snakemake", "train.steps is given twice", params=_set("  steps: 30", "  steps: 30\n  steps: 9")),
    Case("unknown-key", "snakemake", "train.stepz: unknown key", params=_set("  steps: 30", "  stepz: 30")),
    Case("wrong-type", "snakemake", "train.steps: got 'many'", params=_set("  steps: 30", "  steps: many")),
    Case("negative-lr", "snakemake", "train.lr: got -1", params=_set("  warmup_steps: 5", "  warmup_steps: 5\n  lr: -1")),
    Case("moved-device", "snakemake", "train.device: moved to the top level of the params",
         params=_set("  warmup_steps: 5", "  warmup_steps: 5\n  device: cpu")),
    Case("mix-sum", "snakemake", "data.mention_mix: fractions sum to 0.9",
         params=_set("mention_mix: {1: 0.4, 4: 0.6}", "mention_mix: {1: 0.4, 4: 0.5}")),
    Case("same-scheme-twice", "snakemake", "'penalized-0.75' and 'penalized-.75' are the same scheme",
         params=_set("schemes: [none, binary, penalized-0.75, calibrated]",
                     "schemes: [none, binary, penalized-0.75, penalized-.75]")),
    Case("unknown-advantage", "snakemake", "posttrain.advantage: got 'mean'; Input should be 'group', 'vs_abstain' or 'factored'",
         params=_set("  group_size: 2", "  group_size: 2\n  advantage: mean")),
    Case("control-not-a-scheme", "snakemake", "invariant_control: 'penalized-0.9' is not a post-trained scheme",
         params=_set("  invariant_control: [binary]", "  invariant_control: [penalized-0.9]")),
    Case("control-already-invariant", "snakemake", "with batch_invariant true every run is already exactly on-policy",
         params=_set("  invariant_control: [binary]", "  invariant_control: [binary]\n  batch_invariant: true")),
    Case("memory", "snakemake", "train.batch_size", params=_set("  batch_size: 8", "  batch_size: 1000000000")),
    Case("user-corpus-missing", "snakemake", "data.user_corpus.path: ",
         params=_data("  user_corpus: {path: CASE/nowhere}")),
    Case("user-corpus-not-utf8", "snakemake", "a.txt: not UTF-8 text", params=_user_corpus(),
         setup=_corpus({"a.txt": b"caf\xe9 latin-1\n"})),
    # ---- params through a stage's own entry point ---------------------------------------------
    Case("unseen-bound", "cli", "data.n_unseen: got 1000000000000", params=_set("n_unseen: 16", "n_unseen: 1000000000000")),
    Case("splits", "cli", "data.split_fractions: must name exactly the splits",
         params=_data("  split_fractions: {finetune: 0.5, rl: 0.5}")),
    Case("unknown-scheme", "cli", "penalized-1.5", params=_set("schemes: [none, binary, penalized-0.75, calibrated]",
                                                                "schemes: [none, penalized-1.5]")),
    Case("scheme-listed-twice", "cli", "scheme 'binary' is listed twice",
         params=_set("schemes: [none, binary, penalized-0.75, calibrated]", "schemes: [binary, binary]")),
    Case("heads", "cli", "d_model=32 is not divisible by n_head=3",
         params=_set("tiny: {n_layer: 1, n_head: 2, d_model: 32, block_size: 192}",
                     "tiny: {n_layer: 1, n_head: 3, d_model: 32, block_size: 192}")),
    Case("rotary-odd", "cli", "rotary positions need an even head size",
         params=_set("tiny: {n_layer: 1, n_head: 2, d_model: 32, block_size: 192}",
                     "tiny: {n_layer: 1, n_head: 32, d_model: 32, block_size: 192, positional: rotary}")),
    Case("warmup", "cli", "warmup_steps=50 exceeds steps=30", params=_set("  warmup_steps: 5", "  warmup_steps: 50")),
    Case("nd-threads", "cli", "nondeterminism.threads", params=_set("batch_sizes: [1, 2, 4]", "batch_sizes: [1, 2, 4]\n  threads: [0]")),
    Case("nd-batch", "cli", "batch sizes must be >= 1", params=_set("batch_sizes: [1, 2, 4]", "batch_sizes: [0, 2]")),
    Case("nd-repeat-job", "cli", "repeat_job 'bfloat16/sdpa/threads1' is not one of the study's jobs",
         params=_set("batch_sizes: [1, 2, 4]", "batch_sizes: [1, 2, 4]\n  repeat_job: bfloat16/sdpa/threads1")),
    Case("nd-target-share", "cli", "nondeterminism.target_share",
         params=_set("batch_sizes: [1, 2, 4]", "batch_sizes: [1, 2, 4]\n  target_share: 0")),
    Case("mech-greedy-cut", "cli", "strategy 'g': greedy decoding (temperature 0) takes no top_k or top_p",
         params=_set("    - {name: greedy, temperature: 0}", "    - {name: g, temperature: 0, top_k: 3}")),
    Case("model-name", "cli", "model name 'ti ny'", params=_set("  tiny: {", "  'ti ny': {")),
    Case("study-name", "cli", "study: got 'my study'", params=_set("study: smoke", "study: my study")),
    Case("too-few-people", "cli", "n_people=4 is too few", params=_set("n_people: 40", "n_people: 4")),
    Case("not-a-mapping", "cli", "must be a YAML mapping", params=lambda text: "- a\n- b\n"),
    Case("not-yaml", "cli", "not valid YAML", params=lambda text: "study: [smoke\n"),
    Case("params-not-utf8", "cli", "not UTF-8 text", params=lambda text: "study: caf\udce9"),
    Case("params-missing", "cli", "CASE/none.yaml: params file not found",
         argv=lambda case: ["data", "--params", str(case / "none.yaml"), "--out", str(case / "out")]),
    Case("user-corpus-no-text", "cli", "a.jsonl:1: expected an object with a string field 'text'",
         params=_user_corpus(), setup=_corpus({"a.jsonl": b'{"body": "no text field"}\n'})),
    Case("user-corpus-bad-json", "cli", "a.jsonl:2: not valid JSON", params=_user_corpus(),
         setup=_corpus({"a.jsonl": b'{"text": "fine"}\n{"text": \n'})),
    Case("user-corpus-empty", "cli", "holds no .txt or .jsonl files", params=_user_corpus(),
         setup=_corpus({"notes.md": b"# not a corpus file\n"})),
    # ---- flags -----------------------------------------------------------------------------------
    Case("threads-zero", "cli", "argument --threads: must be at least 1, got 0",
         argv=lambda case: _train(case, "--threads", "0")),
    Case("threads-negative", "cli", "argument --threads: must be at least 1, got -1",
         argv=lambda case: _train(case, "--threads", "-1")),
    Case("job-not-json", "cli", "--job: not valid JSON",
         argv=lambda case: ["data", "--job", "{study: smoke", "--out", str(case / "out")]),
    Case("job-unknown-key", "cli", "--job: trian: unknown key",
         argv=lambda case: ["data", "--job", json.dumps({"study": "smoke", "trian": {}}), "--out", str(case / "out")]),
    Case("scheme-flag", "cli", "--scheme: scheme 'penalized-2'", setup=_copy_inputs,
         argv=lambda case: _evaluate(case, "--scheme", "penalized-2", "--seed", "1")),
    Case("unknown-model", "cli", "models.huge: no such model", setup=_copy_inputs,
         argv=lambda case: _train(case)[:4] + ["huge"] + _train(case)[5:]),
    # ---- files a stage reads -------------------------------------------------------------------
    Case("ckpt-missing", "cli", "CASE/ckpt.pt: checkpoint not found",
         setup=_then(_copy_inputs, lambda case, project: (case / "ckpt.pt").unlink()), argv=_evaluate),
    Case("ckpt-garbage", "cli", "CASE/ckpt.pt: not a readable nextlab checkpoint",
         setup=_then(_copy_inputs, _write("ckpt.pt", b"not a checkpoint")), argv=_evaluate),
    Case("ckpt-truncated", "cli", "CASE/ckpt.pt: not a readable nextlab checkpoint",
         setup=_then(_copy_inputs, _truncate("ckpt.pt", 4000)), argv=_evaluate),
    Case("ckpt-wrong-stage", "cli", "checkpoint was written by the pretrain stage, expected sft",
         setup=lambda case, project: (_copy_inputs(case, project), shutil.copy(
             project / "results/smoke/models/tiny/pretrain/ckpt.pt", case / "ckpt.pt")), argv=_evaluate),
    Case("tokenizer-garbage", "cli", "CASE/tokenizer/tokenizer.json",
         setup=_then(_copy_inputs, _write("tokenizer/tokenizer.json", b"{ nope")), argv=_evaluate),
    Case("qa-not-parquet", "cli", "CASE/data/qa.parquet: not a readable parquet file",
         setup=_then(_copy_inputs, _write("data/qa.parquet", b"PAR1 broken")), argv=_evaluate),
    Case("tokens-garbage", "cli", "CASE/tokenizer/train.npy: not a readable .npy token file",
         setup=_then(_copy_inputs, _write("tokenizer/train.npy", b"\x93NUMPY garbage")), argv=_train),
    Case("tokens-missing", "cli", "CASE/tokenizer/val.npy: token file not found",
         setup=_then(_copy_inputs, lambda case, project: (case / "tokenizer" / "val.npy").unlink()), argv=_train),
    Case("answers-foreign", "cli", "lacks column(s)",
         setup=_then(_copy_inputs, lambda case, project: __import__("pandas").DataFrame({"x": [1]}).to_parquet(
             case / "a.parquet")),
         argv=lambda case: ["evaluate", "--params", "params/smoke.yaml", "--summary", "--answers",
                            str(case / "a.parquet"), "--data", str(case / "data"), "--out", str(case / "out")]),
    Case("report-no-results", "cli", "no results",
         argv=lambda case: ["report", "--params", "params/smoke.yaml", "--results", str(case / "empty"),
                            "--out", str(case / "out"), "--data-out", str(case / "out")]),
    Case("relog-nothing", "cli", "no job records",
         argv=lambda case: ["relog", "--results", str(case / "empty")]),
]


def _manifest(results: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(results.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(results)).encode() + path.read_bytes())
    return digest.hexdigest()


def _run_case(case: Case, project: dict, root: Path) -> dict:
    folder = root / case.id
    folder.mkdir()
    (folder / "empty").mkdir()
    if case.setup:
        case.setup(folder, project["path"])
    if case.params:
        text = case.params((project["path"] / "params/smoke.yaml").read_text()).replace("CASE", str(folder))
        params = folder / "params.yaml"
        params.write_bytes(text.encode("utf-8", "surrogateescape"))
    else:
        params = None
    if case.entry == "snakemake":
        # A real run, not a dry run: a check that let the params through would start jobs.
        argv = ["snakemake", "--cores", "2", "--config", f"params={params}"]
    else:
        argv = ["nextlab", *(case.argv(folder) if case.argv else ["data", "--params", str(params), "--out",
                                                                 str(folder / "out")])]
    env = {**project["env"], "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}  # the study's runs stay clean
    proc = run(argv, project["path"], env, check=False, timeout=120)
    return {"proc": proc, "folder": folder}


@pytest.fixture(scope="module")
def outcomes(smoke_project, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    run(["nextlab", "relog", "--dry-run", "--results", str(smoke_project["path"] / "results" / "smoke")],
        smoke_project["path"], {**smoke_project["env"], "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})
    results = smoke_project["path"] / "results"
    before = _manifest(results)
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip([c.id for c in CASES], pool.map(lambda c: _run_case(c, smoke_project, root), CASES)))
    return {"cases": done, "before": before, "after": _manifest(results)}


def test_catalogue_is_large_enough():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_before_any_work(case, outcomes):
    outcome = outcomes["cases"][case.id]
    proc, folder = outcome["proc"], outcome["folder"]
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    assert proc.returncode != 0, lines
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    message = [line for line in lines if "error" in line or "invalid params" in line]
    assert len(message) == 1 and len(lines) == 1, lines
    assert case.expect.replace("CASE", str(folder)) in message[0], message[0]
    assert not (folder / "out").exists()


def test_finished_results_are_untouched(outcomes):
    assert outcomes["after"] == outcomes["before"]
