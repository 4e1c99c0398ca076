"""Built-in detector models (YOLOv7 family)."""

from edgeprune.models.demo import demo_model
from edgeprune.models.head import Detector, IDetect, ImplicitA, ImplicitM
from edgeprune.models.yolov7 import yolov7, yolov7_tiny

__all__ = ["Detector", "IDetect", "ImplicitA", "ImplicitM", "demo_model", "yolov7", "yolov7_tiny"]
