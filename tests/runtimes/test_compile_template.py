"""Runtime.compile is one template: a new runtime supplies only _check, _build and _open (and one registry
line), and gets the path, SDK, option, precision and thread checks, hashing, timing, error wrapping and
artifact.json from the base class."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

from edgeprune.errors import (
    CompileError,
    InvalidConfigError,
    MissingDependencyError,
    UnsupportedPrecisionError,
)
from edgeprune.runtimes import registry
from edgeprune.runtimes.base import Artifact, Runtime, Session


class ToyRuntime(Runtime):
    """A runtime whose "SDK" reverses the ONNX bytes into ``model.toy``."""

    name = "toy"
    precisions = ("fp32", "fp16")
    known_options = frozenset({"mode"})

    def _check(self, sdk, job):
        if job.requested.get("mode", "fast") not in ("fast", "slow"):
            raise InvalidConfigError("toy: mode must be 'fast' or 'slow'")
        job.options["mode"] = job.requested.get("mode", "fast")

    def _build(self, sdk, job):
        out = job.workdir / "model.toy"
        out.write_bytes(sdk.convert(job.onnx_path.read_bytes()))
        job.meta["converted_bytes"] = out.stat().st_size
        return out, [out]

    def _open(self, artifact: Artifact) -> Session:
        raise NotImplementedError


@pytest.fixture
def toy(monkeypatch):
    sdk = types.SimpleNamespace(__version__="1.2.3", convert=lambda b: b[::-1])
    monkeypatch.setitem(sys.modules, "toysdk", sdk)
    monkeypatch.setitem(registry.RUNTIMES, "toy", registry.RuntimeEntry("toy", "toy_backend", "toysdk",
                                                                        "toysdk", "toy"))
    return ToyRuntime(), sdk


def test_the_template_builds_and_records_the_artifact(toy, tmp_path):
    rt, _ = toy
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx")
    art = rt.compile(onnx, tmp_path / "w", precision="FP16", threads=2, mode="slow")
    assert (tmp_path / "w" / "model.toy").read_bytes() == b"xnno yllaer ton"
    saved = json.loads((tmp_path / "w" / "artifact.json").read_text())
    assert saved["runtime"] == "toy" and saved["path"] == "model.toy" and saved["files"] == ["model.toy"]
    assert saved["precision"] == "fp16" and saved["options"] == {"threads": 2, "mode": "slow"}
    assert saved["onnx_sha256"] == hashlib.sha256(b"not really onnx").hexdigest()
    assert saved["meta"]["runtime_version"] == "1.2.3" and saved["meta"]["converted_bytes"] == 15
    assert saved["meta"]["compile_s"] >= 0
    assert Artifact.load(tmp_path / "w").to_dict() == art.to_dict()


@pytest.mark.parametrize("call, error, match", [
    (lambda rt, p, w: rt.compile(p, w, typo=1), InvalidConfigError, r"toy: unknown options \['typo'\]"),
    (lambda rt, p, w: rt.compile(p, w, precision="int8"), UnsupportedPrecisionError, "supported"),
    (lambda rt, p, w: rt.compile(p, w, threads=0), InvalidConfigError, "threads"),
    (lambda rt, p, w: rt.compile(p, w, mode="odd"), InvalidConfigError, "mode"),
    (lambda rt, p, w: rt.compile(p.parent, w), InvalidConfigError, "is a folder"),
    (lambda rt, p, w: rt.compile(p.with_name("none.onnx"), w), InvalidConfigError, "not found"),
])
def test_bad_input_is_refused_before_anything_is_written(toy, tmp_path, call, error, match):
    rt, _ = toy
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(error, match=match):
        call(rt, onnx, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_sdk_failures_become_compile_errors_and_a_missing_sdk_names_its_extra(toy, tmp_path, monkeypatch):
    rt, sdk = toy
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")

    def broken(_):
        raise RuntimeError("converter crashed")

    sdk.convert = broken
    with pytest.raises(CompileError, match=r"toy could not compile .*m\.onnx: converter crashed") as err:
        rt.compile(onnx, tmp_path / "w")
    assert isinstance(err.value.__cause__, RuntimeError)
    assert not (tmp_path / "w" / "artifact.json").exists()
    monkeypatch.setitem(sys.modules, "toysdk", None)
    with pytest.raises(MissingDependencyError, match=r"edgeprune\[toy\]"):
        rt.compile(onnx, tmp_path / "w2")


def test_every_registered_backend_uses_the_template():
    import importlib

    for entry in registry.RUNTIMES.values():
        cls = type(importlib.import_module(f"edgeprune.runtimes.{entry.backend}").RUNTIME)
        assert cls.name == entry.name
        assert "compile" not in vars(cls) and "version" not in vars(cls), cls
        assert Path(importlib.import_module(cls.__module__).__file__).name == f"{entry.backend}.py"
