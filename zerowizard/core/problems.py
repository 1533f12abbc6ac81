"""A problem found in a plan or a DeepSpeed JSON: severity, field, message, fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Problem:
    severity: str  # error | warning | info
    field: str  # the plan or JSON field, dotted
    message: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}" + (f" — {self.fix}" if self.fix else "")


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: SEVERITIES.index(p.severity))
