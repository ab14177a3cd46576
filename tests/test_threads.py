"""Runs side by side share the cores instead of each taking all of them."""

import os
import subprocess
import sys

from lift3d.utils import threads


def test_a_second_run_takes_its_share_and_stale_entries_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT3D_CACHE_DIR", str(tmp_path))
    assert threads.choose_threads(None, cores=2) == (2, None)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = threads.running_dir()
        folder.mkdir(parents=True)
        (folder / str(other.pid)).touch()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        (folder / dead.stdout.strip()).touch()  # a run that ended without cleaning up
        n, note = threads.choose_threads(None, cores=2)
        assert n == 1 and "1 other lift3d run is using this machine; this run takes 1 of 2 cores" in note
        assert not (folder / dead.stdout.strip()).exists()
        assert threads.choose_threads(None, cores=8)[0] == 4
        assert threads.choose_threads(3, cores=2) == (3, None)  # --threads wins
    finally:
        other.kill()
        other.wait()
    assert threads.choose_threads(None, cores=2)[0] == 2


def test_a_run_registers_itself_until_it_exits(tmp_path):
    env = {**os.environ, "LIFT3D_CACHE_DIR": str(tmp_path)}
    code = ("import os, sys; from lift3d.utils import threads; threads.register_run(); "
            "print(sorted(p.name for p in threads.running_dir().iterdir()) == [str(os.getpid())])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.stdout.strip() == "True", proc.stderr
    assert list((tmp_path / "running").iterdir()) == []
