"""A titled group of fields: one column of labels (a single widget) beside the controls.

The labels show each field's state: bold accent for the focused field, red for a field in
error, dim for a disabled one. Below the group, one line per invalid field says why
("✖ Micro batch: 0 is below the minimum 1"); an optional note (hardware, model) follows.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from .fields import PlanField
from .note import Note


class Labels(Widget):
    """The labels of a group, one a line, drawn in one widget."""

    def __init__(self, group: FieldGroup):
        super().__init__(classes="group-labels")
        self.group = group

    def render(self) -> Text:
        g = self.group
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, f in enumerate(g.fields):
            if i:
                out.append("\n")
            if f.path in g.errors:
                style = "bold #ff6b6b"
            elif f.disabled:
                style = "#5c6370"
            elif f is g.focused:
                style = "bold #e5c07b"
            else:
                style = ""
            out.append(("▸" if f is g.focused else " ") + f.label, style)
        return out

    def on_click(self, event: events.Click) -> None:
        if 0 <= event.y < len(self.group.fields) and not self.group.fields[event.y].disabled:
            self.group.fields[event.y].focus()


class FieldGroup(Vertical):
    """``title`` over the ``fields`` (PlanField controls), the error lines and ``note``."""

    def __init__(self, title: str, fields: list[PlanField], *, note: Note | None = None, id: str | None = None):
        super().__init__(id=id, classes="group")
        self.border_title = title
        self.fields, self.note = fields, note
        self.errors: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.focused: PlanField | None = None
        self._labels = Labels(self)
        self._message = Static("", classes="group-errors")
        self._message.display = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="group-row"):
            yield self._labels
            with Vertical(classes="group-controls"):
                yield from self.fields
        yield self._message
        if self.note is not None:
            yield self.note

    def show_errors(self, messages: dict[str, str], marks: dict[str, str]) -> None:
        """Mark the labels of ``marks`` (plan field -> problem) red, and list ``messages`` (plan
        field -> why the typed text is not valid) below the group."""
        marked = {f.path for f in self.fields if f.path in marks}
        mine = {f.path: messages[f.path] for f in self.fields if f.path in messages}
        if marked != self.errors.keys():
            self.errors = {p: marks[p] for p in marked}
            self._labels.refresh()
        if mine == self.messages:
            return
        self.messages = mine
        text = Text()
        for f in self.fields:
            if f.path in mine:
                if text:
                    text.append("\n")
                text.append("✖ ", "bold #ff6b6b")
                text.append(f"{f.label}: {mine[f.path]}", "#ff6b6b")
        self._message.update(text)
        self._message.display = bool(mine)

    def refresh_labels(self) -> None:
        self._labels.refresh()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.focused = event.widget if event.widget in self.fields else None
        self._labels.refresh()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if self.focused is event.widget:
            self.focused = None
            self._labels.refresh()
