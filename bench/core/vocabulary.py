"""The project's words, each defined once: precisions, optimizers, point statuses, timer names, and
why sampling or warm-up stopped. Everything that checks, stores or shows one of these imports it here.
"""

from __future__ import annotations

# Numeric precision of a training step (autocast for bf16/fp16; tf32 = fp32 with TF32 matmuls).
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# What convergence runs train in (fp16 would need a loss scaler in every run; tf32 is a GPU-only fp32).
TRAINING_PRECISIONS = ("fp32", "bf16")
GPU_ONLY_PRECISIONS = ("tf32", "fp16")

# Optimizers: the step-time sweep uses the two with fused CUDA kernels; convergence runs add the
# layer-wise LARS and LAMB, which time like SGD and AdamW respectively.
STEP_OPTIMIZERS = ("sgd", "adamw")
OPTIMIZERS = ("sgd", "adamw", "lars", "lamb")
TIMED_AS = {"sgd": "sgd", "lars": "sgd", "adamw": "adamw", "lamb": "adamw"}

# The outcome of one measured point.
STATUS_OK = "ok"
STATUS_OOM = "oom"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_OOM, STATUS_ERROR)

# Timers.
TIMER_CUDA_EVENT = "cuda_event"  # a pair of CUDA events around each step, one host sync per block
TIMER_HOST = "host"  # time.perf_counter around each step
TIMERS = (TIMER_CUDA_EVENT, TIMER_HOST)

# Why sampling stopped.
STOP_CI = "ci_target"  # the 95% CI of the median is within the target
STOP_BUDGET = "budget"  # the per-point time budget ran out first
STOP_MAX_SAMPLES = "max_samples"
STOP_COUNT = "count"  # a fixed number of samples was asked for

# Why warm-up ended.
WARM_STABLE = "stable"  # after the minimum time, block medians that far apart no longer fall by more than the CI target
WARM_MAX_STEPS = "max_steps"
WARM_MAX_TIME = "max_time"
WARM_BUDGET = "budget"  # (files before warm-up had its own limits) the point's budget left no more time for warm-up

# How the largest-batch search chose a probe (bench.run.largest).
PROBE_DOUBLING = "doubling"
PROBE_MODEL = "model"  # the memory model's predicted boundary
PROBE_BISECTION = "bisection"
PROBE_KINDS = (PROBE_DOUBLING, PROBE_MODEL, PROBE_BISECTION)
