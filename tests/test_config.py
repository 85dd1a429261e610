"""Params: the schema accepts the shipped studies and names every bad value precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nextlab.cli import main
from nextlab.config import ParamsError, Study, load_study, validate_study

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["default", "smoke", "gpu"])
def test_shipped_params_validate(name):
    path = ROOT / "params" / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} not shipped yet")
    study = load_study(path)
    assert study.study == name


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"data": {"n_peple": 10}}, "data.n_peple: unknown key"),
        ({"dat": {}}, "dat: unknown key"),
        ({"data": {"n_people": 0}}, "data.n_people: got 0"),
        ({"data": {"n_people": -5}}, "data.n_people: got -5"),
        ({"data": {"n_people": "many"}}, "data.n_people: got 'many'"),
        ({"data": {"mention_mix": {1: 0.5, 2: 0.4}}}, "data.mention_mix: fractions sum to 0.9, must sum to 1"),
        ({"data": {"mention_mix": {0: 1.0}}}, "data.mention_mix: mention count 0 must be between 1 and 1024"),
        ({"data": {"mention_mix": {1: -0.5, 2: 1.5}}}, "data.mention_mix: fraction -0.5"),
        ({"data": {"split_fractions": {"finetune": 1.0}}}, "data.split_fractions: must name exactly the splits"),
        ({"data": {"attributes": ["birth_year", "shoe_size"]}}, "data.attributes: unknown attribute(s) ['shoe_size']"),
        ({"tokenizer": {"vocab_size": 200}}, "tokenizer.vocab_size: got 200; Input should be greater than or equal to 262"),
        ({"models": {"m": {"d_model": 100, "n_head": 3}}}, "models.m: d_model=100 is not divisible by n_head=3"),
        ({"models": {}}, "models: needs at least one model"),
        ({"models": {"a/b": {}}}, "model name 'a/b' must match"),
        ({"device": "tpu"}, "device: got 'tpu'; Input should be 'auto', 'cpu' or 'cuda'"),
        ({"train": {"device": "cuda"}}, "train.device: moved to the top level of the params"),
        ({"train": {"steps": 10, "warmup_steps": 20}}, "train: warmup_steps=20 exceeds steps=10"),
        ({"study": "my study"}, "study: got 'my study'"),
        ({"data": {"n_people": 10}}, "n_people=10 is too few"),
    ],
)
def test_bad_values_name_key_value_and_rule(raw, expected):
    with pytest.raises(ParamsError) as err:
        validate_study(raw, "p.yaml")
    assert str(err.value).startswith("p.yaml: ")
    assert expected in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ParamsError) as err:
        validate_study({"data": {"n_peple": 1}, "train": {"steps": 0}}, "p.yaml")
    message = str(err.value)
    assert "data.n_peple: unknown key" in message and "train.steps: got 0" in message


def test_defaults_are_a_valid_study():
    assert Study().data.n_people == 400


def _cli_error(tmp_path, capsys, text: str | bytes) -> str:
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["data", "--params", str(path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert not (tmp_path / "out").exists(), "no work may start on bad params"
    return capsys.readouterr().err


def test_cli_not_yaml(tmp_path, capsys):
    err = _cli_error(tmp_path, capsys, "data: [unclosed\n  n_people: 3")
    assert "params.yaml: not valid YAML" in err


def test_cli_not_a_mapping(tmp_path, capsys):
    assert "must be a YAML mapping" in _cli_error(tmp_path, capsys, "- just\n- a list\n")


def test_cli_not_utf8(tmp_path, capsys):
    assert "not UTF-8" in _cli_error(tmp_path, capsys, b"study: \xff\xfe\n")


def test_cli_missing_params_file(tmp_path, capsys):
    code = main(["data", "--params", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "nope.yaml: params file not found" in capsys.readouterr().err


def test_cli_unknown_key_exits_2(tmp_path, capsys):
    err = _cli_error(tmp_path, capsys, yaml.safe_dump({"data": {"mention_mixx": {1: 1.0}}}))
    assert "data.mention_mixx: unknown key" in err
