"""Built-in detector models (YOLOv7 family)."""
