"""Benchmarks: each script prints a table of figures (see README.md)."""
