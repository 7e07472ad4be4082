"""One training loop reused by every model, plus per-model targets and entry points."""
