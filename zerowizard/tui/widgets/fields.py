"""Field editors: one labelled control per plan field.

Each editor knows its plan address (section, name) and posts :class:`PlanField.Changed` with a
parsed value; it never touches the plan. ``show(value)`` syncs it from the plan without echoing
a message back (a loaded plan, a variant picked from the bars).
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive
from textual.widgets import Input, Label, Select, Switch

from zerowizard.core.plan import field_doc, field_problem
from zerowizard.core.validation import InputError, parse_number


class FieldInput(Input):
    """An Input that repaints as it is typed into, without re-laying out the screen.

    Textual's Input sets its virtual size to the text's width on every keystroke, and a widget's
    virtual size asks for a layout of the whole screen when it changes (about 7 ms here, more than
    the repaint it delays). A field's Input has a fixed size (``.field Input`` in the .tcss), so
    that layout moves nothing: here the virtual size only repaints.
    """

    virtual_size = Reactive(Size(0, 0), layout=False)


class PlanField(Horizontal):
    """A label and one control bound to ``plan.<section>.<name>`` (section None: top level)."""

    class Changed(Message):
        def __init__(self, field: PlanField, section: str | None, name: str, value: Any):
            super().__init__()
            self.field, self.section, self.name, self.value = field, section, name, value

        @property
        def control(self) -> PlanField:
            return self.field

    def __init__(self, label: str, section: str | None, name: str, value: Any, widget_id: str | None = None):
        super().__init__(id=widget_id or f"{section or 'plan'}-{name}", classes="field")
        self.field_label, self.section, self.key, self.value = label, section, name, value
        self.tooltip = field_doc(section or "", name) or None

    def compose(self) -> ComposeResult:
        yield Label(self.field_label, classes="field-label")
        yield self.make_control()

    def make_control(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def emit(self, value: Any) -> None:
        self.value = value
        # Straight to the screen that owns the plan rather than up through the form's containers:
        # each hop is a turn of another widget's queue, and meanwhile the screen paints the typed
        # character in a frame of its own, so the new bars wait for the next frame (1/60 s on).
        # Posted here, the character and the bars it changed go out in one frame.
        self.screen.post_message(self.Changed(self, self.section, self.key, value))

    def show(self, value: Any) -> None:
        """Display ``value`` without posting Changed."""
        self.value = value


class NumberField(PlanField):
    """An int or float; blank means None where the field is optional (e.g. 'all detected')."""

    def __init__(
        self,
        label: str,
        section: str | None,
        name: str,
        value: Any,
        *,
        kind: type = int,
        optional: bool = False,
        placeholder: str = "",
        minimum: float = 1,
    ):
        self.kind, self.optional, self.placeholder, self.minimum = kind, optional, placeholder, minimum
        super().__init__(label, section, name, value)

    def _text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.kind is float and float(value).is_integer():
            return str(int(value))
        return str(value)

    def make_control(self):
        return FieldInput(
            self._text(self.value),
            placeholder=self.placeholder,
            compact=True,
            type="integer" if self.kind is int else "number",
        )

    def parse(self, text: str) -> tuple[bool, Any]:
        text = text.strip()
        if not text:
            return self.optional, None
        try:  # finite, in range: 'inf' or 1e300 would reach the memory model otherwise
            value = parse_number(text, integer=self.kind is int, minimum=self.minimum)
        except InputError:
            return False, None
        return field_problem(self.section, self.key, value) is None, value

    def on_mount(self) -> None:
        # Read the text as it changes, inside the keystroke: the screen then gets the new value
        # before the Input's repaint, and one frame shows the character and the bars together.
        # (Input.Changed arrives a queue later, after the screen has painted the character alone.)
        self.watch(self.query_one(Input), "value", self._typed, init=False)

    def _typed(self, text: str) -> None:
        ok, value = self.parse(text)
        self.query_one(Input).set_class(not ok, "-invalid")
        if ok and value != self.value:
            self.emit(value)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()  # already read by _typed

    def show(self, value: Any) -> None:
        super().show(value)
        box = self.query_one(Input)
        if self.parse(box.value) != (True, value):
            with box.prevent(Input.Changed):
                box.value = self._text(value)
            box.remove_class("-invalid")


class ChoiceField(PlanField):
    """One of a fixed list; options are (label, value) pairs."""

    def __init__(self, label: str, section: str | None, name: str, value: Any, options: list[tuple[str, Any]]):
        self.options = list(options)
        if value not in [v for _, v in self.options]:
            self.options.append((str(value), value))
        super().__init__(label, section, name, value)

    def make_control(self):
        return Select(self.options, value=self.value, allow_blank=False, compact=True)

    @on(Select.Changed)
    def _changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL and event.value != self.value:
            self.emit(event.value)

    def show(self, value: Any) -> None:
        super().show(value)
        sel = self.query_one(Select)
        if value not in [v for _, v in self.options]:
            self.options.append((str(value), value))
            with sel.prevent(Select.Changed):
                sel.set_options(self.options)
        if sel.value != value:
            with sel.prevent(Select.Changed):
                sel.value = value


class ToggleField(PlanField):
    """A boolean."""

    def make_control(self):
        return Switch(bool(self.value))

    @on(Switch.Changed)
    def _changed(self, event: Switch.Changed) -> None:
        event.stop()
        if event.value != self.value:
            self.emit(event.value)

    def show(self, value: Any) -> None:
        super().show(value)
        sw = self.query_one(Switch)
        if sw.value != value:
            with sw.prevent(Switch.Changed):
                sw.value = value


class TextField(PlanField):
    """Free text, applied on Enter or when focus leaves (a path, a hub id)."""

    def __init__(
        self,
        label: str,
        section: str | None,
        name: str,
        value: Any,
        *,
        placeholder: str = "",
        suggestions: list[str] | None = None,
        widget_id: str | None = None,
    ):
        self.placeholder, self.suggestions = placeholder, suggestions
        super().__init__(label, section, name, value, widget_id)

    def make_control(self):
        from textual.suggester import SuggestFromList

        suggester = SuggestFromList(self.suggestions, case_sensitive=False) if self.suggestions else None
        return FieldInput(self.value or "", placeholder=self.placeholder, compact=True, suggester=suggester)

    @on(Input.Submitted)
    @on(Input.Blurred)
    def _submitted(self, event) -> None:
        event.stop()
        text = event.value.strip()
        if text and text != self.value:
            self.emit(text)

    def show(self, value: Any) -> None:
        super().show(value)
        box = self.query_one(Input)
        if box.value != (value or ""):
            with box.prevent(Input.Changed):
                box.value = value or ""
