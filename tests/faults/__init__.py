"""Fault tests: an acknowledged request survives a crash and reaches storage exactly once."""
