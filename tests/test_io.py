"""Atomic writes: default file mode (umask honoured), fsync before rename, nothing left on failure."""

import os
import stat

import numpy as np
import pytest

from lift3d.utils import io


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, expected):
    os.umask(mask)
    io.atomic_write_text(tmp_path / "a.txt", "hello")
    io.write_png(tmp_path / "b.png", np.zeros((4, 4, 3)))
    io.atomic_save_torch({"x": 1}, tmp_path / "c.ckpt")
    for name in ("a.txt", "b.png", "c.ckpt"):
        assert _mode(tmp_path / name) == expected, name
    # the same mode a plain open() gives
    (tmp_path / "plain.txt").write_text("x")
    assert _mode(tmp_path / "plain.txt") == expected


def test_the_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(io.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    io.atomic_write_text(tmp_path / "a.txt", "hello")
    assert events.index("fsync") < events.index("replace")
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
