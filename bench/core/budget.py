"""The measuring defaults (one table that the sweep, the suites, the CLI and the TTA study read) and the
record of a point whose budget bought fewer timed blocks than a CI across blocks needs. Pure data:
the measuring loop that uses them is `bench.measure.timing`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Mapping

# The one table of measuring defaults. Timing, SweepConfig, `bench sweep`, the pytest suites and the TTA
# study's step timing all read their defaults here (docs/measuring.md, "How a point is measured").
MEASURE_DEFAULTS: Mapping[str, float] = MappingProxyType({
    "budget_s": 2.0,  # wall time of timed steps per point, at most (to within a step; warm-up is apart)
    "min_time_s": 0.5,  # measured step time before a rule may stop a point (lowered to a smaller budget)
    "min_samples": 10,  # samples before a rule may stop a point
    "max_samples": 100_000,  # samples per point, at most
    "ci_target": 0.01,  # the CI rule: stop once the 95% CI of the median is within ±1% of it
    "warmup_min_s": 0.5,  # warm-up step time, at least (after the first step; whatever the budget)
    "warmup_max_s": 30.0,  # warm-up time, at most (after the first step; apart from the budget)
})


@dataclass(frozen=True)
class BlockShortfall:
    """Fewer timed blocks than a CI across blocks needs (MIN_BLOCKS_FOR_CI) fitted a point's budget.

    Without that CI the point's 95% CI rests on the pooled samples alone, which drift makes too
    narrow (or, with fewer than 6 samples, there is none). `budget_needed_s` is about the budget
    that would have fitted `needed` blocks at this step time (warm-up has limits of its own).
    """

    blocks: int
    needed: int
    budget_s: float
    step_s: float
    budget_needed_s: float
    samples: int

    @property
    def message(self) -> str:
        # Imported here, not at the top: stats loads numpy and scipy, which `bench --help` must not wait for.
        from bench.core.stats import MIN_BLOCKS_FOR_CI

        ci = ("its 95% CI rests on the pooled samples alone" if self.samples >= MIN_BLOCKS_FOR_CI
              else f"{self.samples} sample(s) are too few for any 95% CI")
        return (f"only {self.blocks} timed block(s) of {self.step_s:.3g} s steps fitted the {self.budget_s:g} s budget "
                f"({self.needed} are needed for a CI across blocks, which drift cannot make too narrow): {ci}; "
                f"a budget of about {self.budget_needed_s:.2g} s would fit {self.needed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "BlockShortfall | None":
        if not d:
            return None
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

