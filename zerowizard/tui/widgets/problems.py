"""The rules' verdict: every error, warning and note with its fix, worded for the app (the form's
field names, not the command line's flags: see :mod:`zerowizard.tui.labels`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..labels import app_text, label

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
        out.append(label(p.field), style)
        out.append(": ")
        out.append(app_text(p.message))
        if p.fix:
            out.append("\n  → ", "dim")
            out.append(app_text(p.fix), "italic")
    return out


class ProblemsList(Static):
    """Shows a list of zerowizard.core.problems.Problem, errors first."""

    problems: list = []
    _height: int | None = None

    def show(self, problems) -> None:
        problems = list(problems)
        if problems == self.problems and self.has_class("-shown"):
            return
        self.problems = problems
        text = render_problems(problems)
        # re-layout only when the wrapped height changes (a layout costs more than a frame)
        width = self.content_region.width
        height = len(text.wrap(self.app.console, width)) if width else None
        # the height it was laid out at: measured last time, or (first time here) as laid out
        before = self._height if self._height is not None else (self.content_region.height or None)
        self.update(text, layout=height is None or height != before)
        self._height = height
        self.add_class("-shown")
        self.set_class(any(p.severity == "error" for p in problems), "-has-errors")
