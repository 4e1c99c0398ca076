"""edgeprune.runtimes: compile and run ONNX models on each target's own runtime. Never imports torch.

    rt = runtimes.get("onnxruntime")      # "openvino", "opencv", "tensorrt"
    art = rt.compile("m.onnx", workdir, precision="fp32", threads=2)
    with rt.session(art) as s:
        outputs = s.infer({"images": x}); stats = s.profile({"images": x})
"""

from edgeprune.runtimes.base import Artifact, Runtime, Session
from edgeprune.runtimes.bundle import Detector, load_bundle
from edgeprune.runtimes.compare import ComparisonResult, compare
from edgeprune.runtimes.profiling import LatencyStats, ProfileConfig, median_ci, profile_callable
from edgeprune.runtimes.registry import RUNTIMES, available, get, names, sdk_version

__all__ = ["Detector", "load_bundle", "RUNTIMES", "available", "get", "names", "sdk_version",
           "Artifact", "Runtime", "Session", "ComparisonResult", "compare", "LatencyStats",
           "ProfileConfig", "median_ci", "profile_callable"]
