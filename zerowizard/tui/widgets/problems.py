"""The rules' verdict: every error, warning and note with its fix."""
from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

ICONS = {"error": ("✖ ", "bold #ff6b6b"), "warning": ("▲ ", "bold #e5c07b"), "info": ("● ", "#56b6c2")}


def render_problems(problems) -> Text:
    out = Text()
    if not problems:
        out.append("✔ no problems: the plan is ready to export and run", "#61d68a")
        return out
    for i, p in enumerate(problems):
        icon, style = ICONS.get(p.severity, ("• ", ""))
        if i:
            out.append("\n")
        out.append(icon, style)
        out.append(p.field, style)
        out.append(": ")
        out.append(p.message)
        if p.fix:
            out.append("\n  → ", "dim")
            out.append(p.fix, "italic")
    return out


class ProblemsList(Static):
    """Shows ``problems`` (a list of zerowizard.problems.Problem), errors first."""

    problems = reactive(list, always_update=True)

    def watch_problems(self, problems) -> None:
        self.update(render_problems(problems))
        self.set_class(any(p.severity == "error" for p in problems), "-has-errors")
