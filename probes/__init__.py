"""Probes on cached frozen features: sources, tasks, probe heads, metrics, aggregation.

Probes read feature stores written by :mod:`extractors` and never run a model, so adding or changing a
probe never re-runs an extraction.
"""
