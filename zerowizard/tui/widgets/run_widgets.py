"""Run-screen widgets: live memory per device against the prediction, and the loss chart."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget
from textual_plotext import PlotextPlot

from .memory_bars import gib

# what the runner's ``memory_kind`` means ("gpu": torch.cuda.max_memory_allocated per rank)
KINDS = {
    "rss": "RSS per rank (CPU)",
    "gpu": "GPU peak allocated per rank",
    "cuda_max_allocated": "GPU peak allocated per rank",
}


class DeviceMemory(Widget):
    """One bar per rank: measured memory (GPU peak allocated, or RSS on the CPU) vs predicted."""

    memory = reactive(tuple, layout=True)  # bytes per rank (None: not reported yet)
    peak = reactive(tuple)  # the per-rank peak so far, where the runner reports one
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
        known = [m for m in self.memory if m]
        top = max([*known, self.predicted or 0]) * 1.15 or 1
        bar_w = max(6, self.size.width - 16)
        pred_col = round(bar_w * self.predicted / top) if self.predicted else None
        for rank, m in enumerate(self.memory):
            out.append(f"r{rank:<2} ", "bold")
            filled = round(bar_w * (m or 0) / top)
            over = self.predicted is not None and m is not None and m > self.predicted
            for i in range(bar_w):
                if i == pred_col:
                    out.append("│", "bold #e5c07b")
                elif i < filled:
                    out.append("█", "#ff6b6b" if over else "#4c8bf5")
                else:
                    out.append("·", "#5c6370")
            out.append(f" {gib(m):>6}\n")
        if self.predicted:
            out.append("│", "bold #e5c07b")
            out.append(f" predicted {gib(self.predicted)} per device", "dim")
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
