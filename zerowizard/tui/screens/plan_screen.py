"""The planning screen: edit a plan, see every variant's memory, the problems and the final JSON.

This screen owns the plan (a frozen dataclass). Field widgets post ``PlanField.Changed``; the
screen rebuilds the plan with :func:`zerowizard.core.plan.update`, calls :func:`zerowizard.core.analyze`
(sub-millisecond) and hands the result down. Nothing here does arithmetic.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, TabbedContent, TabPane

from zerowizard.core.analysis import Analysis, analyze
from zerowizard.core.hardware import Detection
from zerowizard.core.modelspec import catalog
from zerowizard.core.plan import PRESET_NAMES, Plan, PlanError, update
from zerowizard.core.text import fmt_cc, fmt_gib

from .. import files
from ..widgets.fields import PlanField
from ..widgets.json_preview import JsonPreview
from ..widgets.memory_bars import MemoryBars
from ..widgets.note import Note
from ..widgets.plan_form import PlanForm
from ..widgets.problems import ProblemsList
from .dialogs import PathsDialog


def _count(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


class PlanScreen(Screen):
    """Hardware, model, batch and ZeRO fields on the left; bars, problems and JSON on the right."""

    BINDINGS = [
        Binding("ctrl+t", "export", "Export"),
        Binding("ctrl+s", "save", "Save plan"),
        Binding("ctrl+o", "load", "Load plan"),
        Binding("ctrl+r", "run", "Run"),
        Binding("ctrl+g", "use_recommended", "Use ★"),
        Binding("f2", "show_tab('problems')", "Problems"),
        Binding("f3", "show_tab('json')", "JSON"),
    ]

    plan: reactive[Plan] = reactive(Plan, init=False, repaint=False)

    def __init__(self, plan: Plan, plan_path: str | None, detection: Detection):
        super().__init__()
        self.plan_path, self.detection = plan_path, detection
        self.analysis: Analysis = analyze(plan, detection=detection)
        self._shown: dict[str, object] = {}
        self._widgets: dict[str, object] = {}
        self.set_reactive(PlanScreen.plan, plan)

    # ---- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(icon="⚡")
        with Horizontal(id="main"):
            yield PlanForm(self.plan, self.detection, id="form")
            with Vertical(id="right"):
                yield MemoryBars(id="bars")
                yield Note(id="recommend", classes="info")
                with TabbedContent(id="tabs"):
                    with TabPane("Problems", id="problems"), VerticalScroll():
                        yield ProblemsList(id="problem-list")
                    with TabPane("DeepSpeed JSON", id="json"), VerticalScroll():
                        yield JsonPreview(id="preview")
                with Horizontal(id="actions"):
                    yield Button("Export", id="export", variant="primary", compact=True)
                    yield Button("Save", id="save", compact=True)
                    yield Button("Load", id="load", compact=True)
                    yield Button("Run ▶", id="run", variant="success", compact=True)
                    yield Note(id="blocked")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "zerowizard"
        self.show_analysis(self.analysis)

    # ---- state --------------------------------------------------------------------------
    @on(PlanField.Changed)
    async def field_changed(self, event: PlanField.Changed) -> None:
        event.stop()
        plan = update(self.plan, event.section, **{event.name: event.value})
        if event.section is None and event.name == "deepspeed":
            # a new base: its own ZeRO settings apply again
            plan = update(plan, "zero", stage=None, offload_optimizer=None, offload_param=None)
        self.plan = plan
        # One turn of the event loop: the widgets just handed the analysis tell this screen they
        # need a repaint, so the next frame holds all of them. Without it the screen can go idle
        # first and paint the field alone, and the bars wait a frame (1/60 s) for the next one.
        await asyncio.sleep(0)

    @on(MemoryBars.Picked)
    def variant_picked(self, event: MemoryBars.Picked) -> None:
        self.apply_variant(event.variant)

    def apply_variant(self, v) -> None:
        if self.plan.deepspeed in PRESET_NAMES and v.preset:
            plan = update(self.plan, None, deepspeed=v.preset)
            self.plan = update(plan, "zero", stage=None, offload_optimizer=None, offload_param=None)
        else:
            self.plan = update(
                self.plan, "zero", stage=v.stage, offload_optimizer=v.offload_optimizer, offload_param=v.offload_param
            )

    def watch_plan(self, plan: Plan) -> None:
        self.show_analysis(analyze(plan, detection=self.detection))

    def show_analysis(self, a: Analysis) -> None:
        """Hand a new analysis down. Only what changed is touched: a change to one field must
        repaint the bars within a frame, so no needless layout, CSS or footer work."""
        old_errors = bool(self.analysis.errors)
        self.analysis = a
        plan = a.plan
        bad = {p.field for p in a.errors}
        for f in self._w("fields"):
            f.set_class((f"{f.section}.{f.key}" if f.section else f.key) in bad, "-error")
            value = getattr(getattr(plan, f.section), f.key) if f.section else getattr(plan, f.key)
            if f.id == "model-path":
                value = "" if value in catalog() else value
            elif f.id == "plan-deepspeed-path":
                value = "" if value in PRESET_NAMES else value
            if f.value != value:
                f.show(value)
        self._w("#method-lora_r").disabled = plan.method.type == "full"
        self._w("#bars").analysis = a
        self._put("#hw-info", self._hardware_text(a))
        self._put("#model-info", self._model_text(a))
        self._put("#recommend", self._recommend_text(a))
        self._w("#problem-list").show(a.problems)
        self._w("#preview").show(a.ds, a.base_error)
        n_err = len(a.errors)
        tab = self._w("problems-tab")
        label = f"Problems ({len(a.problems)})" if a.problems else "Problems"
        if str(tab.label) != label:
            tab.label = label
        tab.set_class(bool(n_err), "-errors")
        for b in ("#export", "#run"):
            self._w(b).disabled = bool(n_err)
        self._put("#blocked", f"✖ blocked by {n_err} error{'s' if n_err > 1 else ''}" if n_err else "")
        if bool(n_err) != old_errors or not self.is_mounted:
            self.refresh_bindings()

    def _w(self, selector: str):
        """A widget by selector, looked up once (show_analysis runs on every keystroke)."""
        found = self._widgets.get(selector)
        if found is None:
            if selector == "fields":
                found = list(self.query(PlanField))
            elif selector == "problems-tab":
                found = self.query_one("#tabs", TabbedContent).get_tab("problems")
            else:
                found = self.query_one(selector)
            self._widgets[selector] = found
        return found

    def _put(self, selector: str, content) -> None:
        """Set a note only when its content differs."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            self._w(selector).content = content

    def _hardware_text(self, a: Analysis) -> str:
        hw = a.hardware
        cc = fmt_cc(hw.compute_capability, "n/a")
        host = fmt_gib(hw.host_ram_bytes) if hw.host_ram_bytes else "unknown"
        return (
            f"→ {hw.world_size} × {hw.name} ({fmt_gib(hw.memory_bytes)}, cc {cc}), "
            f"{hw.nodes} node{'s' if hw.nodes > 1 else ''}, host {host}/node"
        )

    def _model_text(self, a: Analysis) -> str:
        if a.model is None:
            return f"✖ {a.model_error}"
        pct = 100 * a.params_trainable / max(a.params_total, 1)
        return (
            f"{_count(a.params_total)} · {_count(a.params_trainable)} trainable ({pct:.3g}%)\n"
            f"precision → {a.precision}: {a.precision_reason}"
        )

    def _recommend_text(self, a: Analysis) -> Text:
        sel = a.selected
        out = Text()
        out.append("▶ plan: ", "bold")
        out.append(f"{sel.variant.label} ({fmt_gib(sel.per_gpu.total)})" if sel else "?")
        rec = a.recommended
        if rec is None:
            out.append("\n✖ " + a.recommendation_reason, "#ff6b6b")
            return out
        out.append("   ★ recommended: ", "bold #61d68a")
        out.append(f"{rec.variant.label} ({fmt_gib(rec.per_gpu.total)})")
        if sel is None or rec.variant != sel.variant:
            out.append("\nthe lowest stage that fits · ^g uses it · or click a bar", "dim")
        else:
            out.append("\nthe lowest stage that fits: the plan uses it", "dim")
        return out

    # ---- actions ------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("export", "run") and self.analysis.errors:
            return None  # shown disabled in the footer
        return True

    @on(Button.Pressed)
    def button(self, event: Button.Pressed) -> None:
        self.run_action(event.button.id)

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_use_recommended(self) -> None:
        if self.analysis.recommended is not None:
            self.apply_variant(self.analysis.recommended.variant)
        elif self.analysis.fix is not None:
            self.notify(f"nothing fits; try: {self.analysis.fix.description}", severity="warning")

    def _default_plan_path(self) -> str:
        return self.plan_path or "zerowizard.yaml"

    def action_export(self) -> None:
        if self.analysis.errors:
            self.notify("fix the errors first (see Problems)", severity="error")
            return
        folder = Path(self._default_plan_path()).parent

        def done(paths: dict | None) -> None:
            if paths:
                self.do_export(paths["ds"], paths["plan"])

        self.app.push_screen(
            PathsDialog(
                "Export",
                [("ds", "DeepSpeed JSON", str(folder / "ds.json")), ("plan", "Plan (YAML)", self._default_plan_path())],
                ok="Write",
            ),
            done,
        )

    def do_export(self, ds_path: str, plan_path: str) -> None:
        try:
            written = files.export(self.analysis, ds_path, plan_path)
        except (OSError, ValueError) as exc:
            self.notify(str(exc), title="Export failed", severity="error")
            return
        self.plan_path = str(plan_path)
        self.notify("\n".join(map(str, written)), title="Exported")

    def action_save(self) -> None:
        def done(paths: dict | None) -> None:
            if paths:
                try:
                    self.plan_path = str(files.save(self.plan, paths["plan"]))
                    self.notify(self.plan_path, title="Plan saved")
                except (OSError, ValueError) as exc:  # ValueError: InputError (a directory, a device...)
                    self.notify(str(exc), title="Save failed", severity="error")

        self.app.push_screen(
            PathsDialog("Save plan", [("plan", "Plan (YAML)", self._default_plan_path())], ok="Save"), done
        )

    def action_load(self) -> None:
        def done(paths: dict | None) -> None:
            if paths:
                self.load_from(paths["plan"])

        self.app.push_screen(
            PathsDialog("Load plan", [("plan", "Plan (YAML)", self._default_plan_path())], ok="Load"), done
        )

    def load_from(self, path: str) -> bool:
        try:
            plan = files.load(path)
        except PlanError as exc:
            self.notify("\n".join(exc.errors), title=f"Cannot load {path}", severity="error", timeout=10)
            return False
        self.plan_path = path
        self.plan = plan
        self.notify(path, title="Plan loaded")
        return True

    def action_run(self) -> None:
        if self.analysis.errors:
            self.notify("fix the errors first (see Problems)", severity="error")
            return
        from .run_screen import RunScreen

        out = self.plan.output or str(
            Path("work_dirs")
            / (f"{Path(self.plan.model.name).name}_{self.plan.method.type}_{time.strftime('%Y%m%d_%H%M%S')}")
        )
        self.app.push_screen(RunScreen(self.plan, self.analysis, out))
