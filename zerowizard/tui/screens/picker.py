"""Pick one of a list, with a search box where the list is long (the model catalog, the GPUs).

Typing filters the list (every word must appear in the name or its description: "qwen moe",
"70b"), best matches first; enter picks the highlighted row. Where a field also takes free text (a model directory or
hub id, a DeepSpeed JSON path), the typed text is offered too, after the matches. Dismisses with
``(value,)``, or None when cancelled (a value may itself be None: "from base").
"""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

FREE = object()  # the option id of the typed text


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s\-_./·,()]+", text.lower()))


def score(query: str, label: str, desc: str = "") -> int:
    """0 unless every word of ``query`` appears in the label or the description (any case); more
    where a word begins a part of the label ('7b' is all of qwen2.5-7b's size, a part of -72b's),
    and more again where the label begins with the first word."""
    hay = f"{label} {desc}".lower()
    in_label, in_desc = _tokens(label), _tokens(desc)
    words = query.lower().split()
    total = 1 + (2 if words and label.lower().startswith(words[0]) else 0)  # 'qwen 7b': qwen2.5-7b first
    for word in words:
        if word not in hay:
            return 0
        if word in in_label or any(t.startswith(word) for t in in_label):
            total += 3
        else:
            total += 2 if word in in_desc else 1
    return total


class Picker(ModalScreen[tuple[Any] | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("down", "move(1)", "Down", show=False),
        Binding("up", "move(-1)", "Up", show=False),
    ]

    def __init__(
        self,
        title: str,
        rows: list[tuple[str, Any, str]],
        current: Any,
        *,
        free: str | None = None,
        search: bool = False,
    ):
        """``rows``: (label, value, description)."""
        super().__init__()
        self.title_text, self.rows, self.current, self.free = title, rows, current, free
        self.search = search or free is not None
        self.shown: list[Any] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Label(self.title_text, id="picker-title")
            if self.search:
                hint = "type to search" + (f", or give {self.free}" if self.free else "")
                yield Input(placeholder=hint, id="picker-search", compact=True)
            yield OptionList(id="picker-list")
            yield Label("enter picks · esc cancels", id="picker-hint")

    def on_mount(self) -> None:
        self.fill("")
        if self.search:
            self.query_one("#picker-search", Input).focus()
        else:
            self.query_one(OptionList).focus()

    def fill(self, query: str) -> None:
        ol = self.query_one(OptionList)
        ol.clear_options()
        self.shown = []
        options = []
        text = query.strip()
        scores = [score(text, label, desc) if text else 1 for label, _, desc in self.rows]
        # best score first; among equals the shorter name (the plainest match), then the list's order
        order = sorted((i for i, sc in enumerate(scores) if sc), key=lambda i: (-scores[i], len(self.rows[i][0])))
        for i in order:
            label, value, desc = self.rows[i]
            line = Text(label, "bold" if value == self.current else "")
            if desc:
                line.append(f"  {desc}", "dim")
            options.append(Option(line))
            self.shown.append(value)
        if self.free and text and not any(text == label for label, _, _ in self.rows):
            # the typed text as a value of its own: after the matches (enter picks the best match)
            options.append(Option(Text.assemble(("use ", "dim"), (text, "bold"), (f"  ({self.free})", "dim"))))
            self.shown.append(FREE)
        ol.add_options(options)
        if options:
            current = next((i for i, v in enumerate(self.shown) if v is not FREE and v == self.current), None)
            ol.highlighted = current if current is not None and not text else 0

    @on(Input.Changed, "#picker-search")
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        self.fill(event.value)

    @on(Input.Submitted, "#picker-search")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        self.pick(self.query_one(OptionList).highlighted)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.pick(event.option_index)

    def action_move(self, delta: int) -> None:
        ol = self.query_one(OptionList)
        if ol.option_count:
            ol.highlighted = ((ol.highlighted or 0) + delta) % ol.option_count

    def pick(self, index: int | None) -> None:
        if index is None or not 0 <= index < len(self.shown):
            return
        value = self.shown[index]
        if value is FREE:
            value = self.query_one("#picker-search", Input).value.strip()
        self.dismiss((value,))

    def action_cancel(self) -> None:
        self.dismiss(None)
