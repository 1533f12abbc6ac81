"""Small modal dialogs: ask for file paths; ask yes or no."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class PathsDialog(ModalScreen[dict | None]):
    """Ask for named paths; dismisses with {name: path} or None (cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]], ok: str = "OK"):
        """``fields``: (name, label, default path)."""
        super().__init__()
        self.title_text, self.fields, self.ok = title, fields, ok

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            for name, label, default in self.fields:
                yield Label(label, classes="dialog-label")
                yield Input(default, id=f"path-{name}", compact=True)
            with Horizontal(id="dialog-buttons"):
                yield Button(self.ok, id="ok", variant="primary", compact=True, action="screen.ok")
                yield Button("Cancel", id="cancel", compact=True, action="screen.cancel")

    @on(Input.Submitted)
    def action_ok(self) -> None:
        values = {name: self.query_one(f"#path-{name}", Input).value.strip() for name, _, _ in self.fields}
        if all(values.values()):
            self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A question with two answers; dismisses True for ``yes``."""

    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="dialog-title")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.yes, id="yes", variant="error", compact=True, action="screen.yes")
                yield Button(self.no, id="no", compact=True, action="screen.no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
