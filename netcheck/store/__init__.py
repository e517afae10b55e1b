"""Sinks: they store, nothing else."""
