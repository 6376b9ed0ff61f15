"""Measuring: sample statistics, timing and stopping rules, the training step, workloads, tasks, optimizers, telemetry."""
