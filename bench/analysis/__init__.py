"""Analyses over measured records: step time vs batch size, scaling of steps to target, time to accuracy."""
