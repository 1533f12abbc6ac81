"""Run-screen widgets: live memory per device against the prediction, and the loss chart."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget
from textual_plotext import PlotextPlot

from .memory_bars import gib

# what the runner's ``memory_kind`` and ``peak_kind`` mean (older runners said "gpu")
KINDS = {
    "rss": "RSS per rank (CPU)",
    "gpu": "GPU peak allocated per rank",
    "cuda_max_allocated": "GPU peak allocated per rank",
    "rss_peak": "peak RSS",
    "cuda_max_reserved": "peak reserved",
}


OVER_MARGIN = 1.10


class DeviceMemory(Widget):
    """One bar per rank: measured memory (GPU peak allocated, or RSS on the CPU) vs predicted."""

    memory: reactive[tuple] = reactive(tuple, layout=True)  # bytes per rank (None: not reported yet)
    peak: reactive[tuple] = reactive(tuple)  # the per-rank peak so far (``peak_bytes_per_rank``), where reported
    peak_kind = reactive("")
    predicted = reactive(None)
    kind = reactive("")

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 + max(1, len(self.memory)) + 1

    def render(self) -> Text:
        kind = KINDS.get(self.kind, self.kind or "per device")
        out = Text()
        out.append("Memory ", "bold")
        out.append(kind + "\n", "dim")
        if not self.memory:
            out.append("waiting for the first step…", "italic dim")
            return out
        peaks = list(self.peak) + [None] * (len(self.memory) - len(self.peak))
        known = [m for m in (*self.memory, *peaks) if m]
        top = max([*known, self.predicted or 0]) * 1.15 or 1
        bar_w = max(6, self.size.width - 16)
        pred_col = round(bar_w * self.predicted / top) if self.predicted else None
        for rank, (m, peak) in enumerate(zip(self.memory, peaks)):
            out.append(f"r{rank:<2} ", "bold")
            filled = round(bar_w * (m or 0) / top)
            peak_col = min(bar_w - 1, round(bar_w * peak / top)) if peak else None
            # red only beyond the prediction's margin (a model within 10% predicted it)
            over = self.predicted is not None and max(m or 0, peak or 0) > self.predicted * OVER_MARGIN
            for i in range(bar_w):
                if i == peak_col:
                    out.append("◆", "bold #ff6b6b" if over else "bold #c678dd")
                elif i == pred_col:
                    out.append("│", "bold #e5c07b")
                elif i < filled:
                    out.append("█", "#ff6b6b" if over else "#4c8bf5")
                else:
                    out.append("·", "#5c6370")
            out.append(f" {gib(m):>6}\n")
        if self.predicted:
            out.append("│", "bold #e5c07b")
            out.append(f" predicted {gib(self.predicted)}/device", "dim")
        if any(peaks):
            out.append("  ◆", "bold #c678dd")
            out.append(f" {KINDS.get(self.peak_kind, self.peak_kind or 'peak')}", "dim")
        return out


class LossChart(PlotextPlot):
    """Loss against step."""

    def show(self, steps: list[int], losses: list[float]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.xlabel("step")
        if steps:
            plt.plot(steps, losses, marker="hd", color="cyan")
        self.refresh()
