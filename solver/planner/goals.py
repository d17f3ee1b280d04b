"""The targets as exact integers, so that targets can be dropped for explanations."""

from __future__ import annotations

from dataclasses import dataclass, fields

from solver.schema import Targets
from solver.timing import seconds_to_ns_floor


@dataclass(frozen=True)
class Goals:
    ttft_ns: int | None = None
    tpot_ns: int | None = None
    min_rate_per_gpu: float | None = None
    min_rate_total: float | None = None
    max_gpus: int | None = None

    @classmethod
    def of(cls, t: Targets) -> Goals:
        return cls(
            ttft_ns=seconds_to_ns_floor(t.max_ttft_s) if t.max_ttft_s is not None else None,
            tpot_ns=seconds_to_ns_floor(t.max_tpot_s) if t.max_tpot_s is not None else None,
            min_rate_per_gpu=t.min_output_tokens_per_s_per_gpu,
            min_rate_total=t.min_output_tokens_per_s,
            max_gpus=t.max_gpus,
        )

    def without(self, *names: str) -> Goals:
        return Goals(**{f.name: (None if f.name in names else getattr(self, f.name))
                        for f in fields(self)})

    def only(self, *names: str) -> Goals:
        return Goals(**{f.name: (getattr(self, f.name) if f.name in names else None)
                        for f in fields(self)})


#: Target name in the instance for each goal.
TARGET_NAMES = {
    "ttft_ns": "max_ttft_s",
    "tpot_ns": "max_tpot_s",
    "min_rate_per_gpu": "min_output_tokens_per_s_per_gpu",
    "min_rate_total": "min_output_tokens_per_s",
    "max_gpus": "max_gpus",
}
