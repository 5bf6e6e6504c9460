"""Metric sinks that need no ML framework (TensorBoard event files written by hand)."""
