"""Field controls: one focusable widget per plan field, bound to its dotted address.

A control posts :class:`PlanField.Edited` with a parsed value, or with the reason the text is not
a valid value (the screen then lists it under Problems and blocks Export and Run); it never
touches the plan. ``show(value)`` syncs it from the plan without posting; the screen never calls
it on the control whose typing changed the plan (the box being edited is the source of truth).

Each control is a single widget (the labels are drawn by :class:`~.field_group.FieldGroup`):
every widget on screen costs the compositor time on every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import events, on
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive
from textual.validation import ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Input

from zerowizard.core.plan import field_doc, field_problem, parse_count
from zerowizard.core.validation import InputError, parse_number

from ..labels import label


def _doc(path: str) -> str:
    section, _, key = path.rpartition(".")
    return field_doc(section, key)


class PlanField(Widget):
    """Base of a control bound to ``plan.<path>`` (``path``: 'batch.micro_batch', 'deepspeed')."""

    path: str
    plan_value: Any = None
    label: str = ""

    class Edited(Message):
        """The user set ``value`` (``error`` is None), or typed text that is not valid (``error``)."""

        def __init__(self, control: PlanField, value: Any, error: str | None = None):
            super().__init__()
            self.field, self.value, self.error = control, value, error

        @property
        def control(self) -> PlanField:
            return self.field

    def bind(self, path: str, value: Any) -> None:
        self.path, self.plan_value = path, value
        self.label = label(path)
        self.tooltip = _doc(path) or None

    def emit(self, value: Any, error: str | None = None) -> None:
        if error is None:
            self.plan_value = value
        # Straight to the screen that owns the plan rather than up through the form's containers:
        # each hop is a turn of another widget's queue, and meanwhile the screen paints the typed
        # character in a frame of its own, so the new bars would wait for the next frame.
        self.screen.post_message(PlanField.Edited(self, value, error))

    def show(self, value: Any) -> None:
        """Display ``value`` (from the plan) without posting Edited."""
        self.plan_value = value


class _Check(Validator):
    """Textual's validation hook (it marks the box -invalid) over the field's own parser."""

    def __init__(self, parse: Callable[[str], Any]):
        super().__init__()
        self.parse = parse

    def validate(self, value: str) -> ValidationResult:
        try:
            self.parse(value)
        except InputError as exc:
            return self.failure(str(exc), value)
        return self.success()


_EDIT_KEYS = {
    key.strip(): b.action
    for b in Input.BINDINGS
    if isinstance(b, Binding) and not b.action.startswith(("app.", "screen.")) and b.action != "submit"
    for key in b.key.split(",")
}


class FieldInput(Input, PlanField):
    """A text box that repaints as it is typed into, without re-laying out the screen.

    Textual's Input sets its virtual size to the text's width on every keystroke, and a widget's
    virtual size asks for a layout of the whole screen when it changes (about 7 ms here, more than
    the repaint it delays). A field's box has a fixed size, so that layout moves nothing.
    """

    virtual_size = Reactive(Size(0, 0), layout=False)

    def __init__(self, path: str, value: Any, *, optional: bool = False, placeholder: str = ""):
        self.optional, self.path, self.plan_value = optional, path, value
        super().__init__(
            self.text_of(value),
            placeholder=placeholder,
            compact=True,
            validators=[_Check(self.parse)],
            validate_on=["changed"],
            id="f-" + path.replace(".", "-"),
            classes="ctl",
        )
        self.bind(path, value)

    def text_of(self, value: Any) -> str:
        return "" if value is None else str(value)

    async def _on_key(self, event: events.Key) -> None:
        """The box's own editing keys (backspace, delete, arrows, ...) act here, in the order the
        keys came. Left to Textual, a key that is a binding bubbles up through every container to
        the app and runs from there, while the characters typed after it are inserted at once:
        keys that arrive together (a held key, a fast typist on a busy machine) are reordered
        ("4096", then eight backspaces and "2" arriving in one read, left the box empty)."""
        action = _EDIT_KEYS.get(event.key)
        if action is not None:
            event.stop()
            event.prevent_default()
            await self.run_action(action)
            return
        await super()._on_key(event)

    def parse(self, text: str) -> Any:
        """The plan value for ``text``; InputError with the reason when there is none."""
        text = text.strip()
        if not text:
            if self.optional:
                return None
            raise InputError("required; it has no empty value")
        return self.checked(text)

    def checked(self, value: Any) -> Any:
        """``value`` if the plan field takes it (the bounds and text checks a plan file gets)."""
        section, _, key = self.path.rpartition(".")
        problem = field_problem(section or None, key, value)
        if problem is not None:
            raise InputError(problem)
        return value

    def check(self, text: str) -> tuple[Any, str | None]:
        try:
            return self.parse(text), None
        except InputError as exc:
            return None, str(exc)

    def _on_input_changed(self, event: Input.Changed) -> None:
        event.stop()  # the field reports through PlanField.Edited

    def show(self, value: Any) -> None:
        super().show(value)
        parsed, error = self.check(self.value)
        if error is not None or parsed != value:
            with self.prevent(Input.Changed):
                self.value = self.text_of(value)


class NumberField(FieldInput):
    """A number, applied as it is typed; blank is None where the field is optional.

    ``kind``: int, float, or "count" (a parameter count: 7B, 350M, 1.5e9)."""

    def __init__(
        self,
        path: str,
        value: Any,
        *,
        kind: type | str = int,
        optional: bool = False,
        placeholder: str = "",
        minimum: float | None = 1,
    ):
        self.kind, self.minimum = kind, minimum
        super().__init__(path, value, optional=optional, placeholder=placeholder)

    def text_of(self, value: Any) -> str:
        if value is None:
            return ""
        if self.kind is float and float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        if self.kind == "count" and value >= 10**9 and value % 10**9 == 0:
            return f"{value // 10**9}B"
        return str(value)

    def parse(self, text: str) -> Any:
        text = text.strip()
        if not text:
            return super().parse(text)
        if self.kind == "count":
            try:
                return self.checked(parse_count(text))
            except ValueError as exc:  # InputError is one too
                raise InputError(str(exc)) from None
        # finite, in range: 'inf' or 1e300 would reach the memory model otherwise
        return self.checked(parse_number(text, integer=self.kind is int, minimum=self.minimum))

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """ "?" is never part of a number: here it opens the help (the app's binding)."""
        return character != "?" and super().check_consume_key(key, character)

    def watch_value(self, text: str) -> None:
        # Read the text as it changes, inside the keystroke: the screen gets the new value before
        # the box repaints, and one frame shows the character and the bars together.
        value, error = self.check(text)
        if error is not None:
            self.emit(None, error)
        elif value != self.plan_value or self._was_invalid:
            self.emit(value)
        self._was_invalid = error is not None

    _was_invalid = False


class TextField(FieldInput):
    """Free text (a path, a hub id), applied on Enter or when focus leaves."""

    @on(Input.Submitted)
    @on(Input.Blurred)
    def _apply(self, event: Input.Submitted | Input.Blurred) -> None:
        event.stop()
        value = self.parse(self.value)  # text: never invalid
        if value != self.plan_value:
            self.emit(value)


class ChoiceField(PlanField, can_focus=True):
    """One of a list, shown as ``value ▾``: enter, space or a click opens the list (with a search
    where there are many), left/right step through it. ``free``: what typed text means when it
    matches no option (a model directory, a DeepSpeed JSON path); None: options only."""

    BINDINGS = [
        Binding("enter,space", "open", "Choose", show=False),
        Binding("left", "step(-1)", "Previous", show=False),
        Binding("right", "step(1)", "Next", show=False),
    ]

    def __init__(
        self,
        path: str,
        value: Any,
        options: list[tuple[str, Any]],
        *,
        describe: Callable[[Any], str] | None = None,
        free: str | None = None,
        search: bool = False,
    ):
        super().__init__(id="f-" + path.replace(".", "-"), classes="ctl choice")
        self.options, self.describe, self.free, self.search = list(options), describe, free, search
        self.bind(path, value)

    def text_for(self, value: Any) -> str:
        return next((lbl for lbl, v in self.options if v == value), str(value))

    def render(self) -> Text:
        text = self.text_for(self.plan_value)
        width = self.content_region.width or 20
        if len(text) > width - 2:
            text = text[: max(1, width - 3)] + "…"
        return Text.assemble(text.ljust(width - 1), ("▾", "dim"))

    def show(self, value: Any) -> None:
        if value != self.plan_value:
            super().show(value)
            self.refresh()

    def pick(self, value: Any) -> None:
        if value != self.plan_value:
            self.emit(value)
            self.refresh()

    def action_step(self, delta: int) -> None:
        values = [v for _, v in self.options]
        i = values.index(self.plan_value) if self.plan_value in values else -1
        self.pick(values[(i + delta) % len(values)])

    def action_open(self) -> None:
        from ..screens.picker import Picker

        def done(result: tuple[Any] | None) -> None:
            if result is not None:
                self.pick(result[0])

        rows = [(lbl, v, self.describe(v) if self.describe else "") for lbl, v in self.options]
        self.app.push_screen(Picker(self.label, rows, self.plan_value, free=self.free, search=self.search), done)

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.focus()
        self.action_open()


class ToggleField(PlanField, can_focus=True):
    """A boolean, shown as ``● on`` / ``○ off``; space, enter or a click flips it."""

    BINDINGS = [Binding("enter,space", "flip", "Switch", show=False)]

    def __init__(self, path: str, value: bool):
        super().__init__(id="f-" + path.replace(".", "-"), classes="ctl toggle")
        self.bind(path, bool(value))

    def render(self) -> Text:
        return Text("● on", "bold") if self.plan_value else Text("○ off")

    def show(self, value: Any) -> None:
        if bool(value) != self.plan_value:
            super().show(bool(value))
            self.refresh()

    def action_flip(self) -> None:
        self.emit(not self.plan_value)
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.focus()
        self.action_flip()
