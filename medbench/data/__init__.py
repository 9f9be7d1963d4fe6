"""Datasets: the Sample record's loaders and their validation."""
