"""edgeprune: one distribution; runtimes/ and devices/ install as edgeprune.runtimes / .devices."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "edgeprune/_version.py").read_text()).group(1)

HOST_PACKAGES = [
    "edgeprune",
    "edgeprune.cli",
    "edgeprune.pruning",
    "edgeprune.models",
    "edgeprune.data",
    "edgeprune.evaluation",
    "edgeprune.training",
    "edgeprune.iterative",
    "edgeprune.deploy",
    "edgeprune.latency",
]
# Torch-free packages, mapped from top-level folders (auto-discovery does not follow package_dir).
MAPPED_PACKAGES = {
    "edgeprune.runtimes": "runtimes",
    "edgeprune.devices": "devices",
}

setup(
    name="edgeprune",
    version=VERSION,
    description="Prune CNN detectors safely, profile them on each edge target's runtime, "
    "pick the latency knee per target and bundle it for OpenCV apps.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=HOST_PACKAGES + list(MAPPED_PACKAGES),
    package_dir=MAPPED_PACKAGES,
    package_data={
        "edgeprune.devices": ["profiles/*.yaml"],
        "edgeprune.models": ["weights/*.pt", "weights/*.json"],
    },
    # A host install (pruning, export, sweep) needs everything below, torch included; ONNX Runtime
    # and OpenCV are always there because every sweep falls back to them. A device (Jetson, factory
    # PC) installs nothing from here: it runs the torch-free agent zipapp (`edgeprune agent-pack`)
    # with its own numpy and runtime SDK. The `onnxruntime` and `opencv` extras are therefore
    # already satisfied; they exist so the name in a MissingDependencyError always installs.
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "onnx>=1.15",
        "onnxslim>=0.1.30",
        "onnxruntime>=1.16",
        "opencv-python-headless>=4.8",
        "PyYAML>=6.0",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "pycocotools>=2.0.7",
    ],
    extras_require={
        "onnxruntime": ["onnxruntime>=1.16"],
        "openvino": ["openvino>=2024.0"],
        "opencv": ["opencv-python-headless>=4.8"],
        # <11: TensorRT 11 drops BuilderFlag.FP16/INT8 and the calibrator API this backend uses.
        # CUDA calls go through libcudart (ctypes) unless pycuda is installed (the "pycuda" extra).
        "tensorrt": ["tensorrt>=8.5,<11"],
        "pycuda": ["pycuda>=2022.1"],
        "ray": ["ray[client]>=2.9"],  # sensitivity on a Ray cluster; [client] for ray:// addresses
        # Ultralytics YOLOv5u/YOLOv8/YOLO11 checkpoints; its restricted loader (safe_only) is needed
        "ultralytics": ["ultralytics>=8.4.190"],
        "dev": ["pytest>=8", "ruff>=0.5", "build>=1.0", "setuptools>=70.1", "openvino>=2024.0",
                "vermin>=1.6"],
    },
    entry_points={"console_scripts": ["edgeprune=edgeprune.cli:main"]},
)
