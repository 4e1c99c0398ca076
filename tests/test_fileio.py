import hashlib

from edgeprune.fileio import atomic_write_text, read_json, sha256_file, write_json


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "a.json"
    write_json(p, {"x": 1})
    write_json(p, {"x": 2})
    assert read_json(p) == {"x": 2}
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_sha256_file(tmp_path):
    p = atomic_write_text(tmp_path / "t.txt", "hello")
    assert sha256_file(p) == hashlib.sha256(b"hello").hexdigest()
