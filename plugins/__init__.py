"""Thin CLI entry modules: one per Slicer CLI, each naming its model and its XML spec."""
