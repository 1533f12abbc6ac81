"""A one-line tab bar in one widget: ``Problems (3) │ DeepSpeed JSON``. Clicking a tab posts
:class:`TabBar.Picked`; the screen switches what is shown below (cheaper than TabbedContent's
seven widgets on a screen that repaints on every keystroke)."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class TabBar(Widget):
    active = reactive("")
    labels: reactive[tuple[tuple[str, str, str], ...]] = reactive(tuple)  # (id, label, style)

    class Picked(Message):
        def __init__(self, tab: str):
            super().__init__()
            self.tab = tab

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        self._spans: list[tuple[int, int, str]] = []
        for i, (tab, label, style) in enumerate(self.labels):
            if i:
                out.append(" │ ", "#5c6370")
            start = len(out)
            out.append(f" {label} ", (style + " " if style else "") + ("reverse" if tab == self.active else "dim"))
            self._spans.append((start, len(out), tab))
        return out

    def on_click(self, event: events.Click) -> None:
        for start, end, tab in getattr(self, "_spans", []):
            if start <= event.x < end:
                self.post_message(self.Picked(tab))
