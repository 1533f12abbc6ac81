"""Probe: run a few real steps of each candidate variant and show measured against predicted.

Calls ``zerowizard.runner.probe.run_probe`` (its Python API) from a worker thread, with a
progress callback that reports back through ``call_from_thread`` and a cancel event (Back or a
quit stops the candidate that is running). When it is done, the measured peaks go onto the plan
screen's bars (◆) with the measured step times, and ``u`` applies the winner to the plan.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import getters, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ..widgets.keybar import KeyBar
from ..widgets.memory_bars import gib, secs

if TYPE_CHECKING:
    from ..app import ZeroWizardApp


def probe_available() -> bool:
    return importlib.util.find_spec("zerowizard.runner.probe") is not None


ICONS = {"ok": ("✔", "#61d68a"), "oom": ("✖", "bold #ff6b6b"), "failed": ("✖", "#ff6b6b")}


class ProbeScreen(Screen):
    if TYPE_CHECKING:  # the app's own attributes (plan_screen, detection), as Textual's getters type it
        app = getters.app(ZeroWizardApp)

    BINDINGS = [
        Binding("u", "use_winner", "Use the winner", tooltip="apply the winner's ZeRO fields and batch split"),
        Binding("escape,b", "back", "Back", tooltip="back to the plan (stops a probe that is running)"),
    ]

    def __init__(self, plan: Any, analysis: Any, options: Any = None):
        """``options``: a ``ProbeOptions`` (default: the probe's own defaults)."""
        super().__init__()
        self.plan, self.analysis, self.options = plan, analysis, options
        self.cancel = threading.Event()
        self.rows: dict[int, dict] = {}  # candidate index -> what is known of it
        self.total = 0
        self.result: Any = None
        self.error = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="probe"):
            yield Static(id="probe-title")
            yield Static(id="probe-table")
            yield Static(id="probe-verdict")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one("#probe-title", Static).update(
            Text.assemble(
                ("Probe ", "bold"),
                "each candidate trains a few real steps (the same runner as Run); measured beside predicted",
            )
        )
        self.show()
        self.probe()

    @work(thread=True, exclusive=True, group="probe")
    def probe(self) -> None:
        from zerowizard.runner.probe import ProbeOptions, run_probe

        try:
            result = run_probe(
                self.plan,
                self.options or ProbeOptions(),
                on_progress=lambda p: self.app.call_from_thread(self.progress, p),
                cancel=self.cancel,
            )
        except Exception as exc:  # noqa: BLE001 - shown on screen, the app goes on
            self.app.call_from_thread(self.failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self.finished, result)

    # ---- progress ---------------------------------------------------------------------------
    def progress(self, p: Any) -> None:
        self.total = p.total
        row = self.rows.setdefault(p.index, {"candidate": p.candidate})
        row.update(phase=p.phase, step=p.step, steps=p.total_steps, result=p.result)
        self.show()

    def failed(self, error: str) -> None:
        self.error = error
        self.show()

    def finished(self, result: Any) -> None:
        self.result = result
        self.show()
        self.refresh_bindings()
        measured: dict = {}
        for r in result.results:
            c, m = r.candidate, r.measured
            if r.status == "ok" and c.micro_batch == self.plan.batch.micro_batch:
                peaks = [x for x in m.device_peak_bytes if x is not None]
                measured[c.variant] = (max(peaks) if peaks else None, m.step_s)
        self.app.plan_screen.show_measured(measured)

    def show(self) -> None:
        table = Text()
        if not self.rows:
            table.append("choosing the candidates and starting the first…", "dim italic")
        for i in sorted(self.rows):
            table.append_text(self.row_text(self.rows[i]))
            table.append("\n")
        self.query_one("#probe-table", Static).update(table)
        self.query_one("#probe-verdict", Static).update(self.verdict())

    def row_text(self, row: dict) -> Text:
        c, r = row["candidate"], row.get("result")
        out = Text()
        if r is None:
            out.append("◌ ", "#e5c07b")
            out.append(f"{c.label:<30}")
            out.append(f" step {row.get('step', 0)}/{row.get('steps', '?')}", "dim")
            return out
        icon, style = ICONS.get(r.status, ("?", ""))
        out.append(f"{icon} ", style)
        out.append(f"{c.label:<30}", "bold" if r.fits else "")
        peaks = [x for x in r.measured.device_peak_bytes if x is not None]
        predicted = c.predicted.per_gpu.total if c.predicted else None
        out.append(f" peak {gib(max(peaks)) if peaks else '?':>6} (predicted {gib(predicted)})")
        out.append(f"  step {secs(r.measured.step_s)}")
        if c.predicted_step_s:
            out.append(f" (predicted {secs(c.predicted_step_s)})", "dim")
        if r.status != "ok":
            out.append(f"  {r.status}: {r.reason}", "#ff6b6b")
        elif not r.fits:
            out.append("  over the headroom", "#e5c07b")
        return out

    def verdict(self) -> Text:
        if self.error:
            return Text(f"✖ the probe failed: {self.error}", "bold #ff6b6b")
        r = self.result
        if r is None:
            done = sum(1 for row in self.rows.values() if row.get("result") is not None)
            return Text(f"{done}/{self.total or '?'} candidates measured · esc stops", "dim")
        if r.cancelled:
            return Text("■ stopped before every candidate ran", "bold #e5c07b")
        w = r.winner_result
        if w is None:
            fix = f"; {r.fix.description} would fit" if r.fix is not None else ""
            return Text(f"✖ no candidate fits with {r.headroom:.0%} headroom{fix}", "bold #ff6b6b")
        return Text.assemble(
            ("★ winner: ", "bold #61d68a"),
            (w.candidate.label, "bold"),
            f" ({secs(w.measured.step_s)} a step) · u applies it to the plan",
        )

    # ---- actions ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "use_winner":
            return True if self.result is not None and self.result.winner is not None else None
        return True

    def action_use_winner(self) -> None:
        plan = self.result.winner_plan() if self.result is not None else None
        if plan is not None:
            self.app.plan_screen.set_plan(plan)
            self.app.pop_screen()

    def action_back(self) -> None:
        self.cancel.set()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.cancel.set()
