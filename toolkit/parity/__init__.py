"""Parity: feed every runtime the same inputs, compare with the reference, report the verdict."""
