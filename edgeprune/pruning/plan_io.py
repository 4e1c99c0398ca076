"""``PruningPlan``: a JSON-serialisable list of surgery steps (no pickle)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from edgeprune.errors import InvalidPlanError

FORMAT = "edgeprune.pruning_plan"
VERSION = 2  # 2: every step carries the dataflow fingerprint of the model it was made on and a digest


def step_digest(step: dict[str, Any]) -> str:
    """SHA-256 of a step's canonical JSON without its ``digest`` key: any later edit changes it."""
    body = {k: v for k, v in step.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_step(step: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Record the dataflow ``fingerprint`` in ``step`` and its digest (in place); returns the step."""
    step["fingerprint"] = fingerprint
    step["digest"] = step_digest(step)
    return step


class PruningPlan:
    """Steps of channel removal. Each step lists, for every parameter/buffer dim it changes, the
    expected size and the indices to remove, plus the layer attributes to update."""

    def __init__(self, steps: list[dict[str, Any]] | None = None) -> None:
        self.steps: list[dict[str, Any]] = list(steps or [])
        for k, step in enumerate(self.steps):
            _check_step(step, k)

    def then(self, other: PruningPlan) -> PruningPlan:
        """The cumulative plan: this plan's steps, then ``other``'s (made on the already pruned model)."""
        if not isinstance(other, PruningPlan):
            raise InvalidPlanError(f"then() expects a PruningPlan, got {type(other).__name__}")
        sizes: dict[tuple[str, int], int] = {}
        for k, step in enumerate(self.steps + other.steps):
            for p in step["params"]:
                key = (p["name"], p["dim"])
                if key in sizes and sizes[key] != p["size"]:
                    raise InvalidPlanError(
                        f"step {k} expects '{p['name']}' dim {p['dim']} of size {p['size']}, but the steps "
                        f"before leave {sizes[key]}: the second plan was not made on the pruned model")
                sizes[key] = p["size"] - len(p["remove"])
        return PruningPlan(self.steps + other.steps)

    @property
    def groups(self) -> dict[str, dict[str, int]]:
        """Per group id of the last step that touched it: channels before and kept."""
        out: dict[str, dict[str, int]] = {}
        for step in self.steps:
            out.update(step.get("groups", {}))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "steps": self.steps}

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=(",", ":") if
                          indent is None else None)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        """Parse a plan written by ``to_json``; InvalidPlanError if malformed."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise InvalidPlanError(f"pruning plan is not valid JSON: {e}") from None
        except RecursionError:
            raise InvalidPlanError("pruning plan JSON is nested too deeply to be a plan") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidPlanError(f"not an edgeprune pruning plan (format must be '{FORMAT}')")
        if data.get("version") != VERSION:
            raise InvalidPlanError(f"unsupported pruning plan version {data.get('version')!r} "
                                   f"(this edgeprune reads version {VERSION}); make the plan again with "
                                   "ep.plan() on the model it is meant for")
        if not isinstance(data.get("steps"), list):
            raise InvalidPlanError("pruning plan has no 'steps' list")
        return cls(data["steps"])

    def sha256(self) -> str:
        """Hash of the canonical JSON: identifies the pruned architecture and channel choice."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PruningPlan) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        removed = sum(len(p["remove"]) for s in self.steps for p in s["params"] if p["role"] == "out")
        return f"PruningPlan({len(self.steps)} steps, {removed} filters removed)"


def _check_step(step: Any, k: int) -> None:
    if not isinstance(step, dict) or not isinstance(step.get("params"), list) or \
            not isinstance(step.get("attrs"), list):
        raise InvalidPlanError(f"plan step {k} must be an object with 'params' and 'attrs' lists")
    if not isinstance(step.get("fingerprint"), str) or not isinstance(step.get("digest"), str):
        raise InvalidPlanError(f"plan step {k} has no dataflow fingerprint or digest: plans are made by "
                               "ep.plan() (this one was written by hand or by an older edgeprune)")
    if step_digest(step) != step["digest"]:
        raise InvalidPlanError(f"plan step {k} does not match its digest: the plan was edited after "
                               "ep.plan() made it; edited indices are refused, make the plan again")
    for p in step["params"]:
        ok = (isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("dim"), int)
              and isinstance(p.get("size"), int) and isinstance(p.get("remove"), list)
              and not isinstance(p.get("dim"), bool) and not isinstance(p.get("size"), bool)
              and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < p["size"]
                      for i in p["remove"])
              and len(set(p["remove"])) < p["size"]
              and isinstance(p.get("role", ""), str))
        if not ok:
            raise InvalidPlanError(f"plan step {k}: malformed parameter entry {str(p)[:200]}")
    for a in step["attrs"]:
        if not (isinstance(a, dict) and isinstance(a.get("module"), str) and isinstance(a.get("attr"), str)
                and "old" in a and "new" in a):
            raise InvalidPlanError(f"plan step {k}: malformed attribute entry {str(a)[:200]}")
