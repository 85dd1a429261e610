"""Result files are written atomically: a failed write leaves the old file, a good one has the
mode a plain open() would give (results are shared through DVC caches and cluster file systems)."""

import pytest

from nextlab.io import atomic_path, read_json, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a file")
            raise RuntimeError("interrupted")
    assert read_json(target) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_written_file_has_the_mode_of_a_plain_write(tmp_path):
    probe = tmp_path / "plain.txt"
    probe.write_text("x")
    write_json(tmp_path / "atomic.json", {})
    assert (tmp_path / "atomic.json").stat().st_mode & 0o777 == probe.stat().st_mode & 0o777


def test_data_hash_comes_from_the_data_stats_and_a_missing_file_is_named(tmp_path):
    from nextlab.errors import InputFileError
    from nextlab.provenance import data_hash_of

    assert data_hash_of(tmp_path, required=False) is None
    with pytest.raises(InputFileError, match="stats.json"):
        data_hash_of(tmp_path)
    write_json(tmp_path / "stats.json", {"data_hash": "6fb817d961640d2f"})
    assert data_hash_of(tmp_path) == "6fb817d961640d2f"
