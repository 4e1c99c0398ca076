"""Pruning core: trace a model into a channel-dependency graph, plan, and apply surgery."""
