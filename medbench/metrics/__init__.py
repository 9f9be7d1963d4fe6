"""Metric families. Each module is one family and registers itself through the entry point group."""
