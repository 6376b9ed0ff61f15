"""Measuring: sample statistics, timing and stopping rules, the training step, workloads, tasks, optimizers,
allocator memory, the machine's conditions (load, CPU clocks, threads), telemetry."""
