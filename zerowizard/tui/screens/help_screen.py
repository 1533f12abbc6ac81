"""Help (F1 or ?): the bars' legend, every field with its meaning, every key of every screen.

Written from the same data the app runs on (the bars' parts, the form's labels and the plan's
field docs, the screens' bindings), so it cannot drift from what is on screen.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..labels import LABELS
from ..widgets.fields import _doc
from ..widgets.memory_bars import PARTS

LEGEND = (
    ("★", "bold #61d68a", "the recommended variant (it fits; ctrl+g uses it)"),
    ("▶", "bold", "the variant the plan uses now"),
    ("✖", "bold #ff6b6b", "a variant the rules block (e.g. QLoRA with ZeRO-3)"),
    ("│", "#5c6370", "the device's memory: a bar past it does not fit"),
    ("▓", "#ff6b6b", "the part of a bar above the device's memory"),
    ("»", "bold #ff6b6b", "the bar goes on beyond twice the device's memory"),
    ("◆", "bold #e5c07b", "a measured peak (after Probe), on the bar it belongs to"),
    ("fits", "#61d68a", "fits the device, and host RAM where it offloads"),
    ("OVER", "bold #ff6b6b", "more than the device's memory"),
    ("host", "bold #ff6b6b", "fits the device, but the offload needs more host RAM per node than there is"),
)

CONTROLS = (
    ("a number", "type it; it applies as you type; text that is not a number is marked and listed under Problems"),
    ("a list (▾)", "enter, space or a click opens it (type to search where it is long); ← → step through it"),
    ("a switch", "space, enter or a click turns it on or off"),
    ("a path", "type it; it applies on enter or when you leave the box"),
)


def _keys(app) -> Text:
    from .plan_screen import PlanScreen
    from .run_screen import RunScreen

    out = Text()
    for title, bindings in (
        ("Everywhere", type(app).BINDINGS),
        ("Plan screen", PlanScreen.BINDINGS),
        ("Run screen", RunScreen.BINDINGS),
    ):
        out.append(f"\n{title}\n", "bold #56b6c2")
        for b in bindings:
            if not isinstance(b, Binding):
                continue
            keys = ", ".join(app.get_key_display(Binding(k, b.action)) for k in b.key.split(","))
            out.append(f"  {keys:<14}", "bold #e5c07b")
            out.append(b.description or b.action)
            if b.tooltip:
                out.append(f": {b.tooltip}", "dim")
            out.append("\n")
    out.append("  ctrl+p        ", "bold #e5c07b")
    out.append("the command palette: every action, and 'set <field> <value>' (type to search)\n")
    out.append("  tab, shift+tab", "bold #e5c07b")
    out.append(" move between fields; the focused field's label is marked ▸\n")
    return out


def help_text(app) -> Text:
    out = Text()
    out.append("zerowizard: plan a DeepSpeed ZeRO fine-tune, see whether it fits, export it, run it\n", "bold")
    out.append("\nThe bars", "bold #56b6c2")
    out.append(": memory per device for every ZeRO stage × offload variant, stacked by part\n")
    for _, name, colour in PARTS:
        out.append("  ■ ", colour)
        out.append(name)
    out.append("\n")
    for mark, style, meaning in LEGEND:
        out.append(f"  {mark:<5}", style)
        out.append(f" {meaning}\n")
    out.append("  step, ×     ", "bold")
    out.append(" predicted time per optimizer step, and how many times the fastest variant's it is\n")
    out.append("\nThe fields\n", "bold #56b6c2")
    for shape, how in CONTROLS:
        out.append(f"  {shape}: ", "italic")
        out.append(how + "\n", "dim")
    for path, name in LABELS.items():
        out.append(f"  {name:<12}", "bold")
        out.append(f"{_doc(path)} ", "")
        out.append(f"({path})\n", "dim")
    out.append("\nThe keys", "bold #56b6c2")
    out.append_text(_keys(app))
    out.append("\nProblems: ✖ errors block Export and Run; ▲ warnings and ● notes only inform.", "dim")
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(self.app), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Help · esc closes"
        self.query_one("#help").focus()

    def action_close(self) -> None:
        self.dismiss(None)
