"""Benchmarks; each writes its own section of BENCHMARKS.md."""
