"""The agent writes only inside its job folder: lock, results and work folders that are links are refused,
and a manifest's ``setup_checks`` of the wrong type is one clear protocol error."""

from __future__ import annotations

import json
import os

import pytest

from edgeprune.devices import load_profile, prepare_job
from edgeprune.devices.agent import main, open_lock_file, run_job
from edgeprune.devices.protocol import Manifest
from edgeprune.errors import ProtocolError

FAST = {"min_s": 0.02, "warmup_s": 0.0, "warmup_runs": 1, "min_runs": 3, "max_repeats": 1}
posix_only = pytest.mark.skipif(os.name != "posix", reason="symlinks and flock are POSIX features")


@pytest.fixture
def job(tmp_path, tiny_models):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("local"), profile_options=FAST)
    return job


def run(job) -> list:
    seen = []
    run_job(job, emit=seen.append, tegrastats_s=0)
    return seen


@posix_only
def test_symlinked_lock_is_refused_and_its_target_untouched(job, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (job / ".lock").symlink_to(victim)
    with pytest.raises(ProtocolError, match="symbolic link"):
        run(job)
    assert victim.read_text() == "precious"  # open(path, "w") used to truncate it
    assert not list((job / "results").glob("*.json"))


@posix_only
def test_lock_opening_never_follows_a_link_nor_truncates(tmp_path):
    target = tmp_path / "outside"
    target.write_text("x")
    link = tmp_path / ".lock"
    link.symlink_to(target)
    with pytest.raises(ProtocolError):
        open_lock_file(link)
    plain = tmp_path / "plain.lock"
    plain.write_text("keep")
    fd = open_lock_file(plain)
    os.close(fd)
    assert plain.read_text() == "keep"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ProtocolError, match="not a regular file"):
        open_lock_file(tmp_path / "fifo")


@posix_only
@pytest.mark.parametrize("folder", ["results", "work"])
def test_symlinked_output_folder_is_refused(job, tmp_path, folder):
    outside = tmp_path / f"outside-{folder}"
    outside.mkdir()
    if (job / folder).exists():
        (job / folder).rmdir()
    (job / folder).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ProtocolError, match=f"'{folder}' in the job folder is a symbolic link"):
        run(job)
    assert list(outside.iterdir()) == []  # nothing written outside the job folder


@posix_only
def test_symlinked_result_file_and_work_subfolder_are_refused(job, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    (job / "results" / "m8.json").symlink_to(outside)
    with pytest.raises(ProtocolError, match="results/m8.json"):
        run(job)
    (job / "results" / "m8.json").unlink()
    (job / "work").mkdir()
    (job / "work" / "m8-abc").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ProtocolError, match="work/m8-abc"):
        run(job)


@posix_only
def test_symlinked_output_exits_with_the_refusal_code(job, tmp_path, capsys):
    (job / "results").rmdir()
    (job / "results").symlink_to(tmp_path, target_is_directory=True)
    assert main(["run", str(job), "--tegrastats-seconds", "0"]) == 2
    assert "symbolic link" in capsys.readouterr().err


def test_a_clean_job_still_runs(job):
    events = run(job)
    assert events[-1] == {"event": "done", "ok": 2, "skipped": 0, "failed": 0}
    assert (job / ".lock").is_file() and not (job / ".lock").is_symlink()


@pytest.mark.parametrize(
    "checks, message",
    [
        ("clocks_locked", "must be a list, got str"),
        ({"power_mode": "MAXN"}, "must be a list, got dict"),
        ([42], r"setup_checks\[0\] = 42 is not a known check"),
        (["no_such_check"], "not a known check"),
        ([{"power_mode": "MAXN", "clocks_locked": True}], "not a known check"),
    ],
)
def test_setup_checks_of_the_wrong_type_is_one_clear_error(job, capsys, checks, message):
    data = json.loads((job / "manifest.json").read_text())
    data["setup_checks"] = checks
    with pytest.raises(ProtocolError, match=message):
        Manifest.from_dict(data)
    (job / "manifest.json").write_text(json.dumps(data))
    assert main(["run", str(job), "--tegrastats-seconds", "0"]) == 2  # not a traceback
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err and "known:" in err


def test_valid_setup_checks_are_accepted(job):
    data = json.loads((job / "manifest.json").read_text())
    for checks in (None, [], ["governor_performance"], [{"power_mode": "MAXN"}]):
        data["setup_checks"] = checks
        assert Manifest.from_dict(data).setup_checks == checks
