"""The bottom layer: errors, the project's vocabulary, devices, user parameters and file I/O (docs/architecture.md)."""
