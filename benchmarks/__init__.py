"""Benchmarks: run as ``python -m benchmarks.<name>``; each prints its command, machine and figures."""
