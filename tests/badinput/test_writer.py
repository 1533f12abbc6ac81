"""The export writer on a real file system: all files or none, links written through, nothing
but regular files written."""

from __future__ import annotations

import os
import stat

import pytest

from zerowizard.core.validation import InputError
from zerowizard.core.writer import Output, _commit, _write_temp, resolve_target, write_all


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_rename_failing_part_way_is_undone(tmp_path):
    """The second rename fails for real (its target turned into a non-empty folder after the
    checks): the first, already renamed, is put back from its hard-link backup."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old a")
    temps = [_write_temp(a, "new a", None), _write_temp(b, "new b", None)]
    b.mkdir()
    (b / "keep").write_text("x")
    with pytest.raises(OSError):
        _commit(temps, [a, b])
    assert a.read_text() == "old a"
    assert names(tmp_path) == ["a.json", "b.json"] and names(b) == ["keep"]


def test_a_new_file_is_removed_when_a_later_rename_fails(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    temps = [_write_temp(a, "new a", None), _write_temp(b, "new b", None)]
    b.mkdir()
    (b / "keep").write_text("x")
    with pytest.raises(OSError):
        _commit(temps, [a, b])
    assert names(tmp_path) == ["b.json"]


def test_modes(tmp_path):
    old = tmp_path / "old.sh"
    old.write_text("x")
    old.chmod(0o640)
    write_all([Output(old, "y"), Output(tmp_path / "job.sh", "z", 0o755)])
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "job.sh").stat().st_mode) == 0o755


def test_links(tmp_path):
    (tmp_path / "real.json").write_text("old")
    os.symlink("real.json", tmp_path / "a.json")
    os.symlink("real.json", tmp_path / "b.json")
    with pytest.raises(InputError, match="are the same file"):
        write_all([Output(tmp_path / "a.json", "1"), Output(tmp_path / "b.json", "2")])
    assert (tmp_path / "real.json").read_text() == "old"
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink("loop2", tmp_path / "loop1")
    with pytest.raises(InputError, match="loop"):
        resolve_target(tmp_path / "loop1")
    write_all([Output(tmp_path / "a.json", "new")])
    assert (tmp_path / "real.json").read_text() == "new" and os.path.islink(tmp_path / "a.json")


@pytest.mark.parametrize("name", ["", "   ", "a\nb.json", "x" * 5000])
def test_names(tmp_path, name):
    with pytest.raises(InputError):
        resolve_target(name)
