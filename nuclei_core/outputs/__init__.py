"""Output writers: one module per format, every write atomic."""
