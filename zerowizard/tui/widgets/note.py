"""A line or two of text that changes often: repaints without re-laying out the screen.

``Static.update`` asks for a full layout; a :class:`Note` has a fixed height (set in the .tcss)
and only repaints, which keeps a field change → bars repaint inside one frame.
"""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget


class Note(Widget):
    content = reactive("")

    def render(self):
        return self.content
