"""edgeprune.runtimes: compile and run ONNX models on each target's own runtime. Never imports torch.

    rt = runtimes.get("onnxruntime")      # "openvino", "opencv", "tensorrt"
    art = rt.compile("m.onnx", workdir, precision="fp32", threads=2)
    with rt.session(art) as s:
        outputs = s.infer({"images": x}); stats = s.profile({"images": x})
"""

from edgeprune.runtimes.registry import RUNTIMES, available, get, names, sdk_version

__all__ = ["RUNTIMES", "available", "get", "names", "sdk_version"]
