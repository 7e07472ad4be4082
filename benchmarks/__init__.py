"""Benchmark scripts; each writes its table to benchmarks/results/ with the machine, date and command."""
