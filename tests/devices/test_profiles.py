"""Device profiles: every built-in loads; bad files fail naming the file and the field."""

from __future__ import annotations

import pytest

from edgeprune.devices import list_profiles, load_profile
from edgeprune.devices.profile_schema import profile_from_dict
from edgeprune.errors import DeviceError
from edgeprune.runtimes import names as runtime_names

BUILTIN = ["intel-cpu", "jetson-agx-orin", "jetson-agx-xavier", "jetson-orin-nano", "jetson-xavier-nx",
           "local", "x86-cpu"]


def test_all_builtin_profiles_load():
    assert set(BUILTIN) <= set(list_profiles())
    for name in BUILTIN:
        p = load_profile(name)
        assert p.name == name and p.runtime in runtime_names()
        assert p.precision in ("fp32", "fp16", "int8") and p.channel_multiple >= 1
        assert p.source.endswith(f"{name}.yaml")
    xavier = load_profile("jetson-agx-xavier")
    assert (xavier.runtime, xavier.precision, xavier.channel_multiple) == ("tensorrt", "fp16", 8)
    assert {"power_mode": "MAXN"} in xavier.setup_checks and "clocks_locked" in xavier.setup_checks
    assert xavier.ssh.python == "python3" and xavier.ssh.host is None
    local = load_profile("local")
    assert local.compile_options() == {"precision": "fp32", "threads": 2} and local.ssh is None


def _write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "body, field, message",
    [
        ("name: a\nruntime: onnxruntime\nthreds: 2\n", "threds", "unknown field"),
        ("name: a\nruntime: onnxruntime\nthreads: two\n", "threads", "must be int"),
        ("name: a\nruntime: onnxruntime\nthreads: true\n", "threads", "must be int"),
        ("name: a\nruntime: tflite\n", "runtime", "unknown runtime 'tflite'"),
        ("name: a\nruntime: tensorrt\nprecision: bf16\n", "precision", "'bf16' is not one of"),
        ("name: a\nruntime: openvino\nchannel_multiple: 0\n", "channel_multiple", "must be >= 1"),
        ("name: a\nruntime: openvino\ninput_size: [640]\n", "input_size", "[height, width]"),
        ("name: a\nruntime: openvino\nsetup_checks: [fan_on]\n", "setup_checks", "unknown check 'fan_on'"),
        ("name: a\nruntime: openvino\nssh: {hots: x}\n", "ssh.hots", "unknown field"),
        ("name: a\nruntime: openvino\nssh: {port: 70000}\n", "ssh.port", "1..65535"),
        ("runtime: openvino\n", "name", "is required"),
    ],
)
def test_invalid_profiles_name_file_and_field(tmp_path, body, field, message):
    path = _write(tmp_path, body)
    with pytest.raises(DeviceError) as info:
        load_profile(path)
    text = str(info.value)
    assert str(path) in text and f"field '{field}'" in text and message in text


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(DeviceError, match="must be a mapping"):
        load_profile(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(DeviceError, match="not valid YAML"):
        load_profile(_write(tmp_path, "name: [a\n"))


def test_user_folder_profiles_and_unknown_names(tmp_path, monkeypatch):
    _write(tmp_path, "name: factory-pc\nruntime: openvino\nthreads: 4\nchannel_multiple: 16\n"
                     "ssh: {host: pc1, user: ops, port: 2222, env: {OMP_WAIT_POLICY: PASSIVE}}\n",
           "factory-pc.yaml")
    _write(tmp_path, "name: local\nruntime: onnxruntime\nthreads: 1\n", "local.yaml")
    monkeypatch.setenv("EDGEPRUNE_DEVICES_PATH", str(tmp_path))
    assert "factory-pc" in list_profiles()
    pc = load_profile("factory-pc")
    assert (pc.threads, pc.channel_multiple, pc.ssh.port) == (4, 16, 2222)
    assert pc.ssh.env == {"OMP_WAIT_POLICY": "PASSIVE"} and pc.ssh.user == "ops"
    assert load_profile("local").threads == 1  # a user folder overrides a built-in of the same name
    with pytest.raises(DeviceError, match="unknown device profile 'nope'.*factory-pc"):
        load_profile("nope")
    with pytest.raises(DeviceError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")


def test_profile_round_trips_through_dict():
    p = load_profile("jetson-agx-orin")
    assert profile_from_dict(p.to_dict(), source="x").to_dict() == p.to_dict()


def test_builtin_runtime_options_are_ones_the_backends_accept():
    from edgeprune.runtimes.tensorrt_options import TrtBuildOptions  # torch- and tensorrt-free

    for name in BUILTIN:
        p = load_profile(name)
        if p.runtime == "tensorrt":
            opts = TrtBuildOptions.from_options(p.precision, **p.runtime_options)  # raises on unknown names
            assert opts.workspace_mib >= 512
        else:
            import importlib

            backend = importlib.import_module(f"edgeprune.runtimes.{p.runtime}_backend")
            assert set(p.runtime_options) <= backend.KNOWN_OPTIONS, (name, p.runtime_options)
