"""Running things end to end: the resumable runner, sweeps, the largest-batch search, suite cases, training, studies."""
