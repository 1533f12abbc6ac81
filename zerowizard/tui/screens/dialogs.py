"""Small modal dialogs: ask for one or more file paths."""

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
                yield Button(self.ok, id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def action_ok(self) -> None:
        values = {name: self.query_one(f"#path-{name}", Input).value.strip() for name, _, _ in self.fields}
        if all(values.values()):
            self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
