"""Pruning from a plain script, with and without ``if __name__ == "__main__":`` (spawned workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeprune.iterative.executors import line_is_guarded, unguarded_main_call

HERE = Path(__file__).resolve().parent

BODY = """
import os, sys, torch
import test_iterative_tinynet as tiny
from edgeprune.iterative import LocalProcessExecutor

def main():
    torch.set_num_threads(1)
    result = tiny.run_tiny(sys.argv[1], 1, executor=LocalProcessExecutor(2))
    print("pids", sorted({int(p) for p in os.listdir(os.environ["TINY_PID_DIR"])}), "main", os.getpid())
    print("final", result.final_iteration)
"""


def _run(tmp_path: Path, guarded: bool) -> tuple[subprocess.CompletedProcess, set[int]]:
    script = tmp_path / "prune_me.py"
    call = "main()"
    if guarded:
        call = 'if __name__ == "__main__":\n    main()'
    script.write_text(textwrap.dedent(BODY) + "\n" + call + "\n", encoding="utf-8")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "TINY_PID_DIR": str(pid_dir), "TINY_EVAL_SLEEP": "0"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True,
                          text=True, env=env, timeout=300)
    return proc, {int(p.name) for p in pid_dir.iterdir()}


@pytest.mark.slow
def test_unguarded_script_runs_in_process_with_a_notice(tmp_path):
    proc, pids = _run(tmp_path, guarded=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final 1" in proc.stdout
    assert "BrokenProcessPool" not in proc.stderr
    notice = [line for line in proc.stderr.splitlines() if "__main__" in line]
    assert len(notice) == 1 and "in this process" in notice[0], proc.stderr[-2000:]
    main_pid = int(proc.stdout.split("main ")[1].split()[0])
    assert pids == {main_pid}  # every evaluation ran in the script's own process


@pytest.mark.slow
def test_guarded_script_uses_worker_processes(tmp_path):
    proc, pids = _run(tmp_path, guarded=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final 1" in proc.stdout
    assert "__main__" not in proc.stderr  # no notice
    main_pid = int(proc.stdout.split("main ")[1].split()[0])
    assert pids - {main_pid}  # the (group, rate) evaluations ran in worker processes


def test_guard_detection_on_sources():
    """Top level, guarded (both operand orders), a guarded call of a function, nested in ``try``."""
    cases = [
        ("x = 1\nrun()\n", 2, False),
        ('if __name__ == "__main__":\n    run()\n', 2, True),
        ("if '__main__' == __name__:\n    run()\n", 2, True),
        ('def f():\n    run()\nif __name__ == "__main__":\n    f()\n', 4, True),
        ("def f():\n    run()\nf()\n", 3, False),
        ('try:\n    if __name__ == "__main__":\n        run()\nexcept Exception:\n    pass\n', 3, True),
        ('if __name__ != "__main__":\n    run()\n', 2, False),
        ('if __name__ == "__main__":\n    pass\nelse:\n    run()\n', 4, False),
    ]
    for source, line, guarded in cases:
        assert line_is_guarded(source, line) is guarded, source


def test_detection_in_a_real_script(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from edgeprune.iterative.executors import line_is_guarded, unguarded_main_call as u\n"
                      "a = u()\n"
                      "if __name__ == '__main__':\n    print(a, u())\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]
    assert unguarded_main_call() is False  # pytest's own __main__ is never re-imported by spawn
