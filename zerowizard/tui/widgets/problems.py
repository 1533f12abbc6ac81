"""The rules' verdict: every error, warning and note with its fix, worded for the app (the form's
field names, not the command line's flags: see :mod:`zerowizard.tui.labels`).

Drawn with the line API: the list is wrapped once per change, and only the lines that differ are
repainted (a keystroke usually changes a figure or two in one problem).
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

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


class ProblemsList(Widget):
    """Shows a list of zerowizard.core.problems.Problem, errors first."""

    problems: list = []
    _key: tuple | None = None
    _strips: list[Strip] = []

    def show(self, problems) -> None:
        problems = list(problems)
        if problems == self.problems and self._key is not None:
            return
        self.problems = problems
        self.set_class(any(p.severity == "error" for p in problems), "-has-errors")
        if not self.is_mounted or not self.content_region.width:
            self._key = None
            self.refresh(layout=True)
            return
        before = self._strips
        after = self._lines()
        if len(before) != len(after):
            self.refresh(layout=True)
            return
        width = self.content_region.width
        changed = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(before, after)) if a != b]
        if changed:
            self.refresh(*changed)

    def _lines(self) -> list[Strip]:
        width = self.content_region.width
        key = (id(self.problems), width, self.rich_style)
        if key != self._key:
            base = self.rich_style
            console = self.app.console
            lines = render_problems(self.problems).wrap(console, max(width, 10))
            self._strips = [
                Strip(
                    [
                        Segment(s.text, base + s.style if s.style else base)
                        for s in line.render(console)
                        if s.text and s.text != "\n"
                    ]
                ).adjust_cell_length(width, base)
                for line in lines
            ]
            self._key = key
        return self._strips

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(render_problems(self.problems).wrap(self.app.console, max(width, 10)))

    def render_line(self, y: int) -> Strip:
        lines = self._lines()
        return lines[y] if y < len(lines) else Strip.blank(self.content_region.width, self.rich_style)
