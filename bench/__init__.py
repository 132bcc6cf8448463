"""Benchmarks: payload builder, load generator, baseline and end-to-end runner."""
