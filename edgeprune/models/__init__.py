"""Built-in detector models (YOLOv7 family) and ``load`` for a user's own checkpoint."""

from edgeprune.models.demo import demo_model
from edgeprune.models.head import Detector, IDetect, ImplicitA, ImplicitM
from edgeprune.models.loading import load
from edgeprune.models.yolov7 import yolov7, yolov7_tiny

__all__ = ["Detector", "IDetect", "ImplicitA", "ImplicitM", "demo_model", "load", "yolov7", "yolov7_tiny"]
