"""One stacked bar per ZeRO stage × offload variant, against the device's capacity.

The screen sets :attr:`MemoryBars.analysis` (and, after a probe, :attr:`MemoryBars.measured`);
the widget only draws them. Clicking a row posts :class:`MemoryBars.Picked` with that variant.
The columns adapt to the width: every figure and the fits/OVER verdict stay on screen down to
40 columns; the bar is what shrinks (then the labels and the host column get shorter).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from zerowizard.core.memory import Variant
from zerowizard.core.text import GIB

from .note import changed_lines

PARTS = (  # (Breakdown attribute, legend name, colour)
    ("weights", "weights", "#4c8bf5"),
    ("grads", "grads", "#c678dd"),
    ("optimizer", "optim", "#e5c07b"),
    ("activations", "activ", "#61d68a"),
    ("buffers", "buffers", "#56b6c2"),
    ("overhead", "overhead", "#8a8f98"),
)
SHORT_NAMES = ("wts", "grad", "opt", "act", "buf", "ovh")  # the legend on a narrow screen
HEADER_LINES = 2
OVER_SCALE = 2.0  # bars are drawn up to this multiple of the device's memory, then clipped
MIN_BAR = 6
MARKER = ("◆", "bold #e5c07b")


def short_label(v: Variant, compact: bool = False) -> str:
    """'ZeRO-3 opt+par→cpu', or compact 'Z3 o+p→cpu' (the core's label, folded to fit)."""
    opt, par = v.offload_optimizer, v.offload_param
    if compact:
        out = f"Z{v.stage}"
        if opt != "none" and par == opt:
            return f"{out} o+p→{opt}"
        return out + (f" o→{opt}" if opt != "none" else "") + (f" p→{par}" if par != "none" else "")
    out = f"ZeRO-{v.stage}"
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


def secs(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 10:
        return f"{s:.2f}s"
    if s < 100:
        return f"{s:.1f}s"
    return f"{s:.0f}s"


@dataclass(frozen=True)
class Columns:
    """Widths of one row's pieces at a given width."""

    label: int
    compact_label: bool
    bar: int
    host: int  # 0: no host column (nothing offloads)
    time: int  # 0: no step times in the analysis

    @staticmethod
    def fit(width: int, labels: list[Variant], host: bool, times: bool) -> Columns:
        """The widest form whose bar keeps MIN_BAR cells; else the most compact, bar shrunk."""
        fixed = 2 + 6 + 5  # mark, " 49.1G", " fits"
        forms = ((False, 11, 14, 20), (False, 7, 10, 16), (True, 7, 10, 0))  # ..., the least bar
        for compact_label, host_w, time_w, least in forms:
            lw = max(len(short_label(v, compact_label)) for v in labels) + 1
            host_w, time_w = host_w if host else 0, time_w if times else 0
            bar = width - fixed - lw - host_w - time_w
            if bar >= least or compact_label:
                return Columns(lw, compact_label, max(0, bar), host_w, time_w)
        raise AssertionError("the last form is compact")


class MemoryBars(Widget, can_focus=False):
    """Per-device memory of every variant, stacked by part; fits / over; recommended starred."""

    class Picked(Message):
        def __init__(self, variant: Variant):
            super().__init__()
            self.variant = variant

    analysis = reactive(None, repaint=False)
    measured: reactive[dict] = reactive(dict, repaint=False)  # Variant -> (peak bytes, step s or None)
    _lines_key: tuple | None = None
    _lines: list = []

    def watch_analysis(self, old, new) -> None:
        # a re-layout only when the number of rows changes; else a repaint of the lines that changed
        if old is None or new is None or self._rows(old) != self._rows(new):
            self.refresh(layout=True)
        else:
            self._repaint_changed()

    def watch_measured(self) -> None:
        self._repaint_changed()

    def _repaint_changed(self) -> None:
        """Repaint only the lines whose strips differ (the styles cache keeps the others): fewer
        lines through Textual's per-line rendering, and a smaller region for the compositor."""
        if not self.is_mounted or not self.size.width:
            self.refresh()
            return
        before = self._lines
        changed = changed_lines(before, self._strips(), self.size.width)
        if changed:
            self.refresh(*changed)

    def _rows(self, a) -> int:
        return len(a.estimates) + (0 if self._selected_listed(a) else 1)

    def get_content_height(self, container, viewport, width: int) -> int:
        a = self.analysis
        if not (a and a.estimates):
            return HEADER_LINES + 1
        return HEADER_LINES + self._rows(a)

    @staticmethod
    def _selected_listed(a) -> bool:
        return a.selected is None or any(e.variant == a.selected.variant for e in a.estimates)

    def rows(self) -> list:
        a = self.analysis
        if a is None:
            return []
        rows = list(a.estimates)
        if not self._selected_listed(a):
            rows.append(a.selected)  # a variant the rules forbid (QLoRA + ZeRO-3): shown, blocked
        return rows

    def render_line(self, y: int) -> Strip:
        """Line API: the rows are drawn once per analysis (or size) as segments and handed out
        line by line. The pieces go straight to segments (no Text to lay out on every change)."""
        lines = self._strips()
        if 0 <= y < len(lines):
            return lines[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _strips(self) -> list[Strip]:
        key = (id(self.analysis), id(self.measured), self.size.width)
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
        return self._lines

    def build_lines(self) -> list[list[tuple[str, str]]]:
        """The rows as (text, style) pieces, one list a line; unstyled neighbours merged."""
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
        width = self.size.width or 80
        times = getattr(a, "times", None) or {}
        timed = bool(times) or any(m[1] is not None for m in self.measured.values())
        self._header(put, a, width, "predicted" if times else "measured" if timed else "")
        if not a.estimates:
            put(a.model_error or "no estimate: set a model and a device memory size", "italic")
            return lines
        rows = self.rows()
        offloads = any(e.variant.offload_optimizer != "none" or e.variant.offload_param != "none" for e in rows)
        cols = Columns.fit(width, [e.variant for e in rows], offloads, timed)
        cap = a.hardware.memory_bytes
        top = max(cap, min(max(e.per_gpu.total for e in rows), int(cap * OVER_SCALE)))
        steps = [t.step_s for t in times.values() if getattr(t, "step_s", None)]
        for e in rows:
            self._row(put, a, e, cols, top, times.get(e.variant), min(steps) if steps else None)
        while lines and not lines[-1]:
            lines.pop()
        return lines

    @staticmethod
    def _header(put, a, width: int, times: str) -> None:
        """'Memory per GPU · A100-80GB 80.0G · host 512G/node' over the legend."""
        hw = a.hardware
        narrow = width < 58
        what = "per rank (CPU: host RAM / ranks)" if hw.is_cpu else f"per GPU · {hw.name}"
        host = f" · host {gib(hw.host_ram_bytes)}/node" if hw.host_ram_bytes else " · host RAM ?"
        if len(what) + len(host) + 14 > width:
            what = "per rank (CPU)" if hw.is_cpu else hw.name
            host = f" · host {gib(hw.host_ram_bytes)}" if hw.host_ram_bytes else ""
        put("Memory", "bold")
        put(f" {what} {gib(hw.memory_bytes)}{host}\n", "dim")
        tail = {"predicted": ("   step ×slower", "  step"), "": ("", "")}.get(times, ("   ◆ measured step", "  ◆ step"))
        full = sum(len(name) + 3 for _, name, _ in PARTS) + len(tail[0])
        short = narrow or full > width  # the legend and the step header on one line, or short names
        for i, (_, name, colour) in enumerate(PARTS):
            put("■ " if not i else " ■ ", colour)
            put(SHORT_NAMES[i] if short else name, "dim")
        put(tail[1] if narrow else tail[0], "dim")
        put("\n")

    def _row(self, put, a, e, cols: Columns, top: int, t, best: float | None) -> None:
        """One variant: mark, label, bar, total, verdict, host RAM, step time."""
        v = e.variant
        blocked = e not in a.estimates
        is_rec = a.recommended is not None and v == a.recommended.variant
        is_sel = a.selected is not None and v == a.selected.variant
        row_style = "on #1d3b2a" if is_rec else ""
        mark = "★" if is_rec else ("✖" if blocked else ("▶" if is_sel else " "))
        put(mark + " ", ("bold #61d68a" if is_rec else "bold #ff6b6b" if blocked else "bold") + " " + row_style)
        label = short_label(v, cols.compact_label).ljust(cols.label)[: cols.label]
        put(label, ("bold " if is_sel or is_rec else "") + row_style)
        cap = a.hardware.memory_bytes
        cap_col = round(cols.bar * cap / top) if top else cols.bar
        measured = self.measured.get(v)
        for run, style in self._bar(e.per_gpu, top, cols.bar, cap_col, measured[0] if measured else None):
            put(run, style)
        put(f" {gib(e.per_gpu.total):>5}", row_style)
        if blocked:
            put(" ✖ BLOCKED\n", "bold #ff6b6b")
            return
        if e.fits:
            put(" fits", "#61d68a " + row_style)
        else:
            put(" OVER" if not e.fits_gpu else " host", "bold #ff6b6b " + row_style)
        if cols.host:
            if v.offload_optimizer != "none" or v.offload_param != "none":
                style = ("#ff6b6b " if not e.fits_host else "dim ") + row_style
                text = f" host {gib(e.per_node_host):>5}" if cols.host >= 11 else f" h{gib(e.per_node_host):>5}"
                put(text.ljust(cols.host), style)
            else:
                put(" " * cols.host, row_style)
        if cols.time:
            put(self._time_text(t, best, measured, cols.time), "dim " + row_style)
        put("\n")

    @staticmethod
    def _time_text(t, best: float | None, measured, width: int) -> str:
        step = getattr(t, "step_s", None)
        if measured and measured[1] is not None:  # a probe's figure beside the prediction
            text = (f" {secs(step)}→" if step is not None else " ◆") + secs(measured[1])
            return text.ljust(width)[:width]
        if step is None:
            return " " * width
        text = f" {secs(step)}"
        if best:
            ratio = step / best
            text += (" " if width >= 14 else "") + (f"×{ratio:.1f}" if ratio < 10 else f"×{ratio:.0f}")
        return text.ljust(width)[:width]

    def _bar(self, b, top: int, bar_w: int, cap_col: int, peak: int | None = None) -> list[tuple[str, str]]:
        """Stacked cells: each cell takes the colour of the part covering its midpoint. Runs of
        equal cells become one (text, style) piece (fewer segments: a cheaper repaint)."""
        if bar_w <= 0:
            return []
        bounds, acc = [], 0
        for attr, _, colour in PARTS:
            acc += getattr(b, attr)
            bounds.append((acc, colour))
        cells: list[tuple[str, str]] = []
        for i in range(bar_w):
            mid = (i + 0.5) * top / bar_w
            part = next((c for edge, c in bounds if mid < edge), None)
            if part is None:
                cells.append(("│", "#5c6370") if i == cap_col else ("·", "#5c6370"))
            elif i >= cap_col:
                cells.append(("▓", f"{part} on #5a1e1e"))
            else:
                cells.append(("█", part))
        if b.total > top:
            cells[-1] = ("»", "bold #ff6b6b")
        if peak is not None:
            cells[min(bar_w - 1, int(bar_w * peak / top))] = MARKER
        runs: list[tuple[str, str]] = []
        for ch, style in cells:
            if runs and runs[-1][1] == style and runs[-1][0][-1] == ch:
                runs[-1] = (runs[-1][0] + ch, style)
            else:
                runs.append((ch, style))
        return runs

    def on_click(self, event: Click) -> None:
        rows = self.rows()
        row = event.y - HEADER_LINES
        if 0 <= row < len(rows) and self.analysis and rows[row] in self.analysis.estimates:
            self.post_message(self.Picked(rows[row].variant))
