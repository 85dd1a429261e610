"""The synthetic world: mention counts, splits, determinism, and facts recoverable from the text."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pandas as pd
import pytest

from nextlab.cli import main
from nextlab.config import DataParams, Study, validate_study
from nextlab.data.stage import read_jsonl
from nextlab.data.stage import run as run_data
from nextlab.data.world import IDK, World, apportion, build_world
from nextlab.errors import InputFileError, ParamsError

MIX = {1: 0.25, 2: 0.15, 4: 0.2, 8: 0.2, 16: 0.2}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    study = validate_study({"seed": 3, "data": {"n_people": 120, "n_unseen": 24, "mention_mix": MIX}})
    run_data(study, None, out)
    return out


def test_mention_counts_match_the_mix(generated):
    world = World.load(generated / "world.json")
    counts = collections.Counter(p.mentions for p in world.people)
    assert counts == apportion(120, MIX) == {1: 30, 2: 18, 4: 24, 8: 24, 16: 24}
    bios = collections.Counter(d["person"] for d in read_jsonl(generated / "corpus/train.jsonl") if d["kind"] == "bio")
    for person in world.people:
        assert bios[person.person_id] == person.mentions
    assert not any(bios[p.person_id] for p in world.unseen)


def test_singleton_rate(generated):
    stats = json.loads((generated / "stats.json").read_text())
    qa = pd.read_parquet(generated / "qa.parquet")
    seen = qa[qa["seen"]]
    assert stats["singleton_rate"] == pytest.approx(30 / 120)
    assert stats["singleton_rate"] == pytest.approx((seen["mentions"] == 1).mean())


def test_splits_are_stratified_by_mentions(generated):
    world = World.load(generated / "world.json")
    table = collections.Counter((p.mentions, p.split) for p in world.people)
    for k in MIX:
        for split in ("finetune", "rl", "calibration", "eval"):
            assert table[(k, split)] >= 1, f"no {split} person with {k} mentions"
    assert {p.split for p in world.unseen} == {"finetune", "rl", "calibration", "eval"}


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    study = validate_study({"seed": 11, "data": {"n_people": 40, "n_unseen": 8}})
    run_data(study, None, tmp_path / "a")
    run_data(study, None, tmp_path / "b")
    for name in ("world.json", "corpus/train.jsonl", "corpus/val.jsonl", "qa.parquet", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = validate_study({"seed": 12, "data": {"n_people": 40, "n_unseen": 8}})
    run_data(other, None, tmp_path / "c")
    assert (tmp_path / "a/world.json").read_bytes() != (tmp_path / "c/world.json").read_bytes()


def test_no_name_is_reused():
    world = build_world(DataParams(n_people=600, n_unseen=300), seed=5)
    names = [p.name for p in world.everyone]
    assert len(set(names)) == len(names)
    values = [v for vocab in world.vocabularies.values() for v in vocab]
    assert len(set(values)) == len(values)
    first_and_last = {part for n in names for part in n.split()}
    assert not first_and_last & set(values), "an attribute value doubles as a name"


def test_every_gold_answer_is_in_the_corpus_exactly_k_times(generated):
    qa = pd.read_parquet(generated / "qa.parquet")
    docs = read_jsonl(generated / "corpus/train.jsonl")
    stated = collections.Counter()
    for doc in docs:
        if doc["kind"] != "bio":
            continue
        for attribute, start, end in doc["spans"]:
            stated[(doc["person"], attribute, doc["text"][start:end])] += 1
    for row in qa[qa["seen"]].itertuples():
        assert stated[(row.person_id, row.attribute, row.answer)] == row.mentions
        # the name and the value really are in that many documents' text
        n = sum(1 for d in docs if d["kind"] == "bio" and row.name in d["text"] and f" {row.answer}" in d["text"])
        assert n >= row.mentions
    assert (qa.loc[~qa["seen"], "answer"] == IDK).all()
    assert (qa.loc[~qa["seen"], "mentions"] == 0).all()


def test_biographies_are_paraphrased_and_shuffled(generated):
    docs = [d for d in read_jsonl(generated / "corpus/train.jsonl") if d["kind"] == "bio"]
    first_attributes = collections.Counter(d["spans"][0][0] for d in docs)
    assert len(first_attributes) == 4, "sentence order is not shuffled"
    person = collections.Counter(d["person"] for d in docs).most_common(1)[0][0]
    renderings = {d["text"] for d in docs if d["person"] == person}
    assert len(renderings) > 1, "16 renderings of one person are all identical"


def test_qa_lines_in_pretraining_only_for_finetune_split(generated):
    qa = pd.read_parquet(generated / "qa.parquet")
    assert set(qa.loc[qa["in_pretraining"], "split"]) == {"finetune"}
    docs = read_jsonl(generated / "corpus/train.jsonl")
    qa_people = {d["person"] for d in docs if d["kind"] == "qa"}
    assert qa_people == set(qa.loc[qa["in_pretraining"], "person_id"])
    assert any(d["text"].endswith(IDK) for d in docs if d["kind"] == "qa")
    off = validate_study({"data": {"n_people": 40, "n_unseen": 8, "qa_in_pretraining": False}})
    assert run_data(off, None, generated.parent / "noqa")["qa_documents"] == 0


def test_validation_text_is_fresh(generated):
    train = {d["text"] for d in read_jsonl(generated / "corpus/train.jsonl")}
    val = read_jsonl(generated / "corpus/val.jsonl")
    assert len(val) == 120
    assert sum(d["text"] in train for d in val) < len(val) * 0.2


def test_a_bucket_too_small_for_every_split_is_an_error():
    with pytest.raises(ParamsError, match=r"data.mention_mix: 16 mention\(s\) gets 2 of 40 people"):
        build_world(DataParams(n_people=40, mention_mix={1: 0.95, 16: 0.05}), seed=0)


# --- a user's own corpus -------------------------------------------------------------------


def _study(user_corpus: dict) -> Study:
    return validate_study({"data": {"n_people": 40, "n_unseen": 8, "user_corpus": user_corpus}})


def test_user_corpus_added_from_txt_and_jsonl(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.txt").write_text("Ünïcode text one.\nSecond line.", encoding="utf-8")
    (folder / "b.jsonl").write_text('{"text": "doc two"}\n\n{"text": "doc three"}\n', encoding="utf-8")
    stats = run_data(_study({"path": str(folder)}), None, tmp_path / "out")
    docs = read_jsonl(tmp_path / "out/corpus/train.jsonl") + read_jsonl(tmp_path / "out/corpus/val.jsonl")
    user = sorted(d["text"] for d in docs if d["kind"] == "user")
    assert user == sorted(["Ünïcode text one.\nSecond line.", "doc two", "doc three"])
    assert stats["bio_documents"] > 0


def test_user_corpus_replaces_synthetic_text(tmp_path):
    path = tmp_path / "only.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(20)), encoding="utf-8")
    stats = run_data(_study({"path": str(path), "mode": "replace"}), None, tmp_path / "out")
    assert stats["bio_documents"] == stats["qa_documents"] == 0
    assert stats["user_documents"] + stats["val_documents"] == 20


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "holds no .txt or .jsonl files"),
        (lambda p: (p.mkdir(), (p / "a.txt").write_text("  \n")), "is empty"),
        (lambda p: (p.mkdir(), (p / "a.txt").write_bytes(b"caf\xe9 latin-1")), "a.txt: not UTF-8"),
        (lambda p: (p.mkdir(), (p / "a.jsonl").write_text('{"text": 1}\n')), "a.jsonl:1: expected an object"),
        (lambda p: (p.mkdir(), (p / "a.jsonl").write_text('{"text": "ok"}\nnot json\n')), "a.jsonl:2: not valid JSON"),
    ],
)
def test_user_corpus_errors_name_the_file(tmp_path, setup, message):
    path = tmp_path / "corpus"
    setup(path)
    with pytest.raises(InputFileError, match=message):
        run_data(_study({"path": str(path)}), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exit_code_and_message_for_missing_user_corpus(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text(f"data: {{n_people: 40, user_corpus: {{path: {tmp_path / 'missing'}}}}}\n")
    assert main(["data", "--params", str(params), "--out", str(tmp_path / "out")]) == 2
    assert "data.user_corpus.path" in capsys.readouterr().err
