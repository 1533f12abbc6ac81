"""One stacked bar per ZeRO stage × offload variant, against the GPU's capacity.

The screen sets :attr:`MemoryBars.analysis`; the widget only draws it. Clicking a row posts
:class:`MemoryBars.Picked` with that variant (the screen decides what it means for the plan).
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from zerowizard.core.memory import Variant
from zerowizard.core.text import GIB

PARTS = (  # (Breakdown attribute, legend name, colour)
    ("weights", "weights", "#4c8bf5"),
    ("grads", "grads", "#c678dd"),
    ("optimizer", "optim", "#e5c07b"),
    ("activations", "activ", "#61d68a"),
    ("buffers", "buffers", "#56b6c2"),
    ("overhead", "overhead", "#8a8f98"),
)
HEADER_LINES = 2
OVER_SCALE = 2.0  # bars are drawn up to this multiple of the GPU's memory, then clipped


def short_label(v: Variant) -> str:
    """'ZeRO-3 opt+par→cpu' (the core's label, folded to fit a narrow column)."""
    out = f"ZeRO-{v.stage}"
    opt, par = v.offload_optimizer, v.offload_param
    if opt != "none" and par == opt:
        return f"{out} opt+par→{opt}"
    if opt != "none":
        out += f" opt→{opt}"
    if par != "none":
        out += f" param→{par}"
    return out


def gib(n: int | None) -> str:
    if n is None:
        return "?"
    x = n / GIB
    return f"{x:.1f}G" if x < 100 else f"{x:.0f}G"


class MemoryBars(Widget, can_focus=False):
    """Per-GPU memory of every variant, stacked by part; fits / over; recommended starred."""

    class Picked(Message):
        def __init__(self, variant: Variant):
            super().__init__()
            self.variant = variant

    analysis = reactive(None)
    _lines_key: tuple | None = None
    _lines: list = []

    def watch_analysis(self, old, new) -> None:
        # a repaint per change; a re-layout only when the number of rows changes
        if old is None or new is None or self._rows(old) != self._rows(new):
            self.refresh(layout=True)

    def _rows(self, a) -> int:
        return len(a.estimates) + (0 if self._selected_listed(a) else 1)

    def get_content_height(self, container, viewport, width: int) -> int:
        a = self.analysis
        if not (a and a.estimates):
            return HEADER_LINES + 1
        return HEADER_LINES + len(a.estimates) + (0 if self._selected_listed(a) else 1)

    @staticmethod
    def _selected_listed(a) -> bool:
        return a.selected is None or any(e.variant == a.selected.variant for e in a.estimates)

    def render_line(self, y: int) -> Strip:
        """Line API: the rows are drawn once per analysis (or size) as segments and handed out
        line by line. The pieces go straight to segments (no Text to lay out on every change)."""
        key = (id(self.analysis), self.size.width)
        if key != self._lines_key:
            self._lines_key = key
            width, base = self.size.width, self.rich_style
            styles: dict[str, Style] = {}
            parse = self.app.console.get_style

            def seg(text: str, style: str) -> Segment:
                if not style:
                    return Segment(text, base)
                found = styles.get(style)
                if found is None:
                    found = styles[style] = base + parse(style)
                return Segment(text, found)

            self._lines = [
                Strip([seg(t, st) for t, st in pieces]).adjust_cell_length(width, base) for pieces in self.build_lines()
            ]
        if 0 <= y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width, self.rich_style)

    def build_lines(self) -> list[list[tuple[str, str]]]:
        """The rows as (text, style) pieces, one list a line; unstyled neighbours merged and the
        last row's trailing blanks dropped, as a rich Text would render them."""
        lines: list[list[tuple[str, str]]] = [[]]

        def put(text: str, style: str = "") -> None:
            for i, part in enumerate(text.split("\n")):
                if i:
                    lines.append([])
                if part:
                    line = lines[-1]
                    if not style and line and not line[-1][1]:
                        line[-1] = (line[-1][0] + part, "")
                    else:
                        line.append((part, style))

        a = self.analysis
        if a is None:
            return [[("", "")]]
        hw = a.hardware
        cap = hw.memory_bytes
        what = "per rank (CPU: host RAM / ranks)" if hw.is_cpu else f"per GPU · {hw.name}"
        host = f" · host {gib(hw.host_ram_bytes)}/node" if hw.host_ram_bytes else " · host RAM unknown"
        put("Memory", "bold")
        put(f" {what} {gib(cap)}{host}\n", "dim")
        for i, (_, name, colour) in enumerate(PARTS):
            put(("■ " if not i else " ■ "), colour)
            put(name, "dim")
        put("\n")
        if not a.estimates:
            put(a.model_error or "no estimate: set a model and a GPU memory size", "italic")
            return lines
        width = max(self.size.width, 60)
        label_w = 20
        tail_w = 6 + 5 + 11  # " 49.1G" + " fits" + " host 128G"
        bar_w = max(8, width - 2 - label_w - tail_w - 1)
        top = max(cap, min(max(e.per_gpu.total for e in a.estimates), int(cap * OVER_SCALE)))
        cap_col = round(bar_w * cap / top) if top else bar_w
        sel = a.selected.variant if a.selected else None
        rec = a.recommended.variant if a.recommended else None
        rows = list(a.estimates)
        if not self._selected_listed(a):
            rows.append(a.selected)  # a variant the rules forbid (QLoRA + ZeRO-3): shown, blocked
        for e in rows:
            v = e.variant
            blocked = e not in a.estimates
            is_rec, is_sel = v == rec, v == sel
            row_style = "on #1d3b2a" if is_rec else ""
            mark = "★" if is_rec else ("✖" if blocked else ("▶" if is_sel else " "))
            put(mark + " ", ("bold #61d68a" if is_rec else "bold #ff6b6b" if blocked else "bold") + " " + row_style)
            put(short_label(v).ljust(label_w)[:label_w], ("bold " if is_sel or is_rec else "") + row_style)
            for run, style in self._bar(e.per_gpu, top, bar_w, cap_col):
                put(run, style)
            put(f" {gib(e.per_gpu.total):>5}", row_style)
            if blocked:
                put(" ✖ BLOCKED", "bold #ff6b6b")
                put("\n")
                continue
            if e.fits:
                put(" fits", "#61d68a " + row_style)
            elif not e.fits_gpu:
                put(" OVER", "bold #ff6b6b " + row_style)
            else:
                put(" host", "bold #ff6b6b " + row_style)
            if v.offload_optimizer != "none" or v.offload_param != "none":
                style = ("#ff6b6b " if not e.fits_host else "dim ") + row_style
                put(f" host {gib(e.per_node_host):>5}".ljust(11), style)
            else:
                put(" " * 11, row_style)
            put("\n")
        # like Text.rstrip(): no trailing newline, no trailing blanks on the last row
        while lines and not lines[-1]:
            lines.pop()
        last = lines[-1]
        while last:
            text, style = last[-1]
            kept = text.rstrip()
            if kept:
                last[-1] = (kept, style)
                break
            last.pop()
        return lines

    def _bar(self, b, top: int, bar_w: int, cap_col: int) -> list[tuple[str, str]]:
        """Stacked cells: each cell takes the colour of the part covering its midpoint. Runs of
        equal cells become one (text, style) piece (fewer segments: a cheaper repaint)."""
        bounds, acc = [], 0
        for attr, _, colour in PARTS:
            acc += getattr(b, attr)
            bounds.append((acc, colour))
        cells = []
        for i in range(bar_w):
            mid = (i + 0.5) * top / bar_w
            colour = next((c for edge, c in bounds if mid < edge), None)
            if colour is None:
                cells.append(("│", "#5c6370") if i == cap_col else ("·", "#5c6370"))
            elif i >= cap_col:
                cells.append(("▓", f"{colour} on #5a1e1e"))
            else:
                cells.append(("█", colour))
        if b.total > top:
            cells[-1] = ("»", "bold #ff6b6b")
        runs = []
        run_char, run_style, n = None, None, 0
        for ch, style in [*cells, (None, None)]:
            if (ch, style) == (run_char, run_style):
                n += 1
                continue
            if n:
                runs.append((run_char * n, run_style))
            run_char, run_style, n = ch, style, 1
        return runs

    def on_click(self, event: Click) -> None:
        a = self.analysis
        row = event.y - HEADER_LINES
        if a and 0 <= row < len(a.estimates):
            self.post_message(self.Picked(a.estimates[row].variant))
