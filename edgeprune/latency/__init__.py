"""Latency in the loop: a per-target latency model measured on the target, and channel counts on its steps.

```python
from edgeprune import latency
from edgeprune.deploy.targets import target_from_config

target = target_from_config({"runtime": "onnxruntime", "threads": 2})
lm = latency.build_latency_model(model, x, latency.profiler_for(target), cache_dir="latency_cache")
lm.predict_model(pruned_model)         # ms on that target
lm.predict_onnx("candidate.onnx")
```
"""

from __future__ import annotations

from edgeprune.latency.layers import ConvLayer, channels_after, channels_of_model, conv_layers
from edgeprune.latency.model import LatencyCache, LatencyModel, LayerTable, build_latency_model
from edgeprune.latency.profilers import LocalProfiler, Profiler, RemoteProfiler, profiler_for
from edgeprune.latency.snap import accuracy, on_steps, snap_count, snap_rates, spearman, step_counts

__all__ = [
    "ConvLayer", "LatencyCache", "LatencyModel", "LayerTable", "LocalProfiler", "Profiler", "RemoteProfiler",
    "accuracy", "on_steps", "build_latency_model", "channels_after", "channels_of_model", "conv_layers",
    "profiler_for", "snap_count", "snap_rates", "spearman", "step_counts",
]
