"""The tokenizer: exact round trips, special-token ids, token files and stats."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from nextlab.config import SPECIAL_TOKENS, validate_study
from nextlab.data.stage import read_jsonl
from nextlab.data.stage import run as run_data
from nextlab.errors import InputFileError
from nextlab.tokenizer import BOS_ID, EOS_ID, load_tokenizer
from nextlab.tokenizer.stage import Inputs as TokenizeInputs
from nextlab.tokenizer.stage import run as run_tokenize


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    study = validate_study({"data": {"n_people": 40, "n_unseen": 8}, "tokenizer": {"vocab_size": 400}})
    run_data(study, None, out / "data")
    stats = run_tokenize(study, TokenizeInputs(out / "data/corpus"), out / "tokenizer")
    return out, stats


def test_round_trip_on_the_corpus(tokenized):
    out, _ = tokenized
    tok = load_tokenizer(out / "tokenizer/tokenizer.json")
    for doc in read_jsonl(out / "data/corpus/train.jsonl") + read_jsonl(out / "data/corpus/val.jsonl"):
        ids = tok.encode(doc["text"], add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == doc["text"]


def _random_unicode(rng: random.Random, n: int) -> str:
    # Mix ASCII, Latin, CJK, emoji, combining marks, whitespace and control characters.
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x4E00, 0x4FFF), (0x1F600, 0x1F64F), (0x300, 0x36F), (0x9, 0xD)]
    chars = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


def test_round_trip_on_arbitrary_unicode(tokenized):
    out, _ = tokenized
    tok = load_tokenizer(out / "tokenizer/tokenizer.json")
    rng = random.Random(0)
    samples = [_random_unicode(rng, rng.randint(0, 80)) for _ in range(300)]
    samples += ["", " ", "  leading", "trailing  ", "\n\n", "a\u0000b", "\ud7ff\ue000", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    for text in samples:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text


def test_special_tokens_have_fixed_ids_and_survive(tokenized):
    out, _ = tokenized
    tok = load_tokenizer(out / "tokenizer/tokenizer.json")
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    text = "<|question|>In which city was Ada born?<|answer|> Veltmor"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ids[0] == SPECIAL_TOKENS.index("<|question|>")
    assert SPECIAL_TOKENS.index("<|answer|>") in ids
    assert tok.decode(ids, skip_special_tokens=False) == text


def test_token_files_and_stats(tokenized):
    out, stats = tokenized
    train = np.load(out / "tokenizer/train.npy")
    val = np.load(out / "tokenizer/val.npy")
    assert train.dtype == np.uint16 and train.ndim == 1
    assert train.max() < stats["vocab_size"]
    assert (train == BOS_ID).sum() == (train == EOS_ID).sum() == stats["train_documents"]
    assert len(train) == stats["train_tokens"] and len(val) == stats["val_tokens"]
    assert 1.0 < stats["train_bytes_per_token"] < 8.0
    assert 0 < stats["vocab_used"] <= stats["vocab_size"]
    assert json.loads((out / "tokenizer/stats.json").read_text())["tokenizer_hash"] == stats["tokenizer_hash"]


def test_same_corpus_same_tokenizer(tokenized, tmp_path):
    out, stats = tokenized
    study = validate_study({"data": {"n_people": 40, "n_unseen": 8}, "tokenizer": {"vocab_size": 400}})
    again = run_tokenize(study, TokenizeInputs(out / "data/corpus"), tmp_path)
    assert again["tokenizer_hash"] == stats["tokenizer_hash"]


def test_missing_or_corrupt_inputs(tmp_path):
    study = validate_study({})
    with pytest.raises(InputFileError, match="train.jsonl: corpus file not found"):
        run_tokenize(study, TokenizeInputs(tmp_path), tmp_path / "out")
    (tmp_path / "train.jsonl").write_text("not json\n")
    with pytest.raises(InputFileError, match=r"train.jsonl:1: expected a JSON object"):
        run_tokenize(study, TokenizeInputs(tmp_path), tmp_path / "out")
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(InputFileError, match="not a valid tokenizer file"):
        load_tokenizer(tmp_path / "tokenizer.json")
