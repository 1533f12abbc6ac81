"""The key line at the bottom: the screen's shown bindings in one widget, clickable.

Textual's Footer is one widget per key (each costs the compositor on every frame) and drops keys
off the right edge on a narrow terminal. This draws them in one line, shortening descriptions
and then leaving out the least important keys until it fits; help (``?``) and quit always stay.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.dom import DOMNode
from textual.widget import Widget

KEY_STYLE = "bold #e5c07b"
ALWAYS = ("help", "quit")


class KeyBar(Widget):
    """Bindings of the current screen with ``show=True``, in binding order."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.spans: list[tuple[int, int, str, DOMNode]] = []

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        self.refresh()

    def entries(self) -> list[tuple[str, str, str, bool, DOMNode]]:
        """(key shown, description, action, enabled, namespace) for each shown binding."""
        seen, out = set(), []
        for node, binding, enabled, _tip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            out.append((self.app.get_key_display(binding), binding.description, binding.action, enabled, node))
        return out

    def fit_entries(self, width: int) -> list[tuple[str, str, str, bool, DOMNode]]:
        entries = self.entries()

        def size(items, short: bool) -> int:
            return sum(len(k) + 1 + len(d.split()[0] if short and d else d) + 2 for k, d, *_ in items)

        if size(entries, False) <= width:
            return entries
        short = [(k, d.split()[0] if d else d, a, e, n) for k, d, a, e, n in entries]
        while size(short, False) > width:
            drop = next((i for i in range(len(short) - 1, -1, -1) if short[i][2] not in ALWAYS), None)
            if drop is None:
                break
            del short[drop]
        return short

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        self.spans = []
        for key, desc, action, enabled, node in self.fit_entries(self.size.width):
            start = len(out)
            out.append(key, KEY_STYLE if enabled else "#5c6370")
            out.append(" " + desc, "" if enabled else "#5c6370")
            self.spans.append((start, len(out), action, node))
            out.append("  ")
        return out

    async def on_click(self, event: events.Click) -> None:
        for start, end, action, node in self.spans:
            if start <= event.x < end:
                await self.app.run_action(action, node)
                return
