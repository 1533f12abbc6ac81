"""A line or two of text that changes often: repaints without re-laying out the screen.

``Static.update`` asks for a full layout and renders through Textual's content pipeline (parse,
wrap, format); a :class:`Note` has a fixed height (set in the .tcss), does not wrap (its texts are
written to fit; what does not fit is cut) and hands out its lines as strips (the line API), which
keeps a field change → bars repaint inside one frame.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget


def changed_lines(before: list[Strip], after: list[Strip], width: int) -> list[Region]:
    """The one-line regions whose strips differ between two renderings (a line added or gone
    counts): what a line-API widget repaints instead of the whole of itself."""
    return [
        Region(0, y, width, 1)
        for y in range(max(len(before), len(after)))
        if y >= len(before) or y >= len(after) or before[y] != after[y]
    ]


class Note(Widget):
    content: reactive[str | Text] = reactive("", repaint=False)
    _key: tuple | None = None
    _strips: list[Strip] = []

    def watch_content(self) -> None:
        """Repaint the lines that changed (the styles cache keeps the others)."""
        width = self.size.width
        if not self.is_mounted or not width:
            self.refresh()
            return
        changed = changed_lines(self._strips, self._current(), width)
        if changed:
            self.refresh(*changed)

    def _current(self) -> list[Strip]:
        width = self.size.width
        key = (id(self.content), width, self.rich_style)
        if key != self._key:
            self._key, self._strips = key, self._lines(width)
        return self._strips

    def render_line(self, y: int) -> Strip:
        strips = self._current()
        if y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _lines(self, width: int) -> list[Strip]:
        base = self.rich_style
        content = self.content
        text = content if isinstance(content, Text) else Text(content)
        console = self.app.console
        out = []
        for line in text.split("\n", allow_blank=True):
            segments = [
                Segment(s.text, base + s.style if s.style else base)
                for s in line.render(console)
                if s.text and s.text != "\n"
            ]
            out.append(Strip(segments).adjust_cell_length(width, base))
        return out
