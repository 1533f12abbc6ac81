"""The planning screen: edit a plan, see every variant's memory, the problems and the final JSON.

This screen owns the plan (a frozen dataclass). Field controls post ``PlanField.Edited``; the
screen rebuilds the plan, calls :func:`zerowizard.core.analysis.analyze` (about a millisecond)
and hands the result down. Text that is not a valid value never reaches the plan: it is kept as
an input error, listed under Problems, and blocks Export and Run until it is fixed. Nothing here
does arithmetic.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Button

from zerowizard.core.analysis import Analysis, analyze
from zerowizard.core.hardware import Detection
from zerowizard.core.plan import PRESET_NAMES, Plan, update
from zerowizard.core.problems import Problem

from ..labels import get_field, set_field
from ..widgets.field_group import FieldGroup
from ..widgets.fields import PlanField
from ..widgets.json_preview import JsonPreview
from ..widgets.keybar import KeyBar
from ..widgets.memory_bars import MemoryBars
from ..widgets.note import Note
from ..widgets.plan_form import PlanForm
from ..widgets.problems import ProblemsList
from ..widgets.tab_bar import TabBar
from . import plan_actions, plan_texts


class PlanScreen(plan_actions.PlanActions):
    """The form on the left; bars, the recommendation, problems / JSON and the actions right."""

    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (72, "-narrow"), (100, "-normal"), (160, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("ctrl+t", "export", "Export", tooltip="write the DeepSpeed JSON and the plan"),
        Binding("ctrl+r", "run", "Run", tooltip="train with this plan"),
        Binding("ctrl+g", "use_recommended", "Use ★", tooltip="apply the recommended variant"),
        Binding("ctrl+s", "save", "Save", tooltip="save the plan (YAML)"),
        Binding("ctrl+o", "load", "Load", tooltip="load a plan (YAML)"),
        Binding("f5", "probe", "Probe", tooltip="measure the candidates for a few real steps"),
        Binding("f6", "runs", "Runs", tooltip="past runs in ./work_dirs: view, resume"),
        Binding("f4", "toggle_form", "Form", tooltip="hide or show the form (below 72 columns: form or bars)"),
        Binding("f2", "show_tab('problems')", "Problems", show=False),
        Binding("f3", "show_tab('json')", "JSON", show=False),
    ]

    plan: reactive[Plan] = reactive(Plan, init=False, repaint=False)

    def __init__(self, plan: Plan, plan_path: str | None, detection: Detection):
        super().__init__()
        self.plan_path, self.detection = plan_path, detection
        self.analysis: Analysis = analyze(plan, detection=detection)
        self.input_errors: dict[str, str] = {}  # plan field -> why the typed text is not valid
        self.tab = "problems"
        self._source: PlanField | None = None  # the control whose typing changed the plan
        self._shown: dict[str, object] = {}
        self._widgets: dict[str, Any] = {}
        self.set_reactive(PlanScreen.plan, plan)

    # ---- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield PlanForm(self.plan, self.detection, id="form")
            with Vertical(id="right"):
                yield MemoryBars(id="bars")
                yield Note(id="recommend")
                yield TabBar(id="tabs")
                with VerticalScroll(id="tab-body"):
                    yield ProblemsList(id="problem-list")
                    yield JsonPreview(id="preview")
                with Horizontal(id="actions"):
                    yield Button("Export", id="export", variant="primary", compact=True, action="screen.export")
                    yield Button("Run ▶", id="run", variant="success", compact=True, action="screen.run")
                    yield Button("Save", id="save", compact=True, action="screen.save")
                    yield Button("Load", id="load", compact=True, action="screen.load")
                    yield Button("Probe", id="probe", compact=True, action="screen.probe")
                    yield Note(id="blocked")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one("#preview").display = False
        self.show_analysis(self.analysis)

    # ---- state --------------------------------------------------------------------------
    @on(PlanField.Edited)
    async def field_changed(self, event: PlanField.Edited) -> None:
        event.stop()
        path = event.field.path
        if event.error is not None:
            self.input_errors[path] = event.error
            self.show_verdict()
            return
        cleared = self.input_errors.pop(path, None) is not None
        plan = set_field(self.plan, path, event.value)
        if plan != self.plan:
            self._source = event.field
            try:
                self.plan = plan
            finally:
                self._source = None
        elif cleared:
            self.show_verdict()
        # One turn of the event loop: the widgets just handed the analysis tell this screen they
        # need a repaint, so the next frame holds all of them. Without it the screen can go idle
        # first and paint the field alone, and the bars wait a frame (1/60 s) for the next one.
        await asyncio.sleep(0)

    def set_value(self, path: str, value: Any) -> None:
        """Set one field from outside the form (the command palette, a picker): the control
        shows the new value, and a typed text that was not valid is dropped."""
        self.input_errors.pop(path, None)
        plan = set_field(self.plan, path, value)
        if plan != self.plan:
            self.plan = plan
        self.sync_fields()

    def set_plan(self, plan: Plan) -> None:
        """Replace the whole plan (a probe's winner): every control shows it, typed errors go."""
        self.input_errors.clear()
        self.plan = plan
        self.sync_fields()

    def show_measured(self, measured: dict) -> None:
        """A probe's measurements (variant -> (peak bytes, step seconds)): markers on the bars."""
        self._w("#bars").measured = measured

    def sync_fields(self) -> None:
        """Every control shows the plan's value (a loaded plan, a value set from outside the form);
        text that was not valid is replaced, and its error dropped."""
        for f in self._w("fields"):
            if f.path not in self.input_errors:
                f.show(get_field(self.plan, f.path))
        self.show_verdict()

    @on(MemoryBars.Picked)
    def variant_picked(self, event: MemoryBars.Picked) -> None:
        self.apply_variant(event.variant)

    def apply_variant(self, v) -> None:
        for path in ("deepspeed", "zero.stage", "zero.offload_optimizer", "zero.offload_param"):
            self.input_errors.pop(path, None)
        if self.plan.deepspeed in PRESET_NAMES and v.preset:
            self.plan = set_field(self.plan, "deepspeed", v.preset)
        else:
            self.plan = update(
                self.plan, "zero", stage=v.stage, offload_optimizer=v.offload_optimizer, offload_param=v.offload_param
            )

    def watch_plan(self, plan: Plan) -> None:
        self.show_analysis(analyze(plan, detection=self.detection))

    @property
    def blocked(self) -> bool:
        """Export and Run are refused: the plan has errors, or a field holds text that is not valid."""
        return bool(self.analysis.errors or self.input_errors)

    def show_analysis(self, a: Analysis) -> None:
        """Hand a new analysis down. Only what changed is touched: a change to one field must
        repaint the bars within a frame, so no needless layout, CSS or key-bar work."""
        self.analysis = a
        plan = a.plan
        for f in self._w("fields"):
            if f is not self._source:  # never write into the box the user is typing in
                value = get_field(plan, f.path)
                if value != f.plan_value:
                    f.show(value)
        relabel = False
        for ctl, off in (
            ("#f-method-lora_r", plan.method.type not in ("lora", "qlora")),
            ("#f-method-freeze_layers", plan.method.type != "freeze"),
        ):
            if self._w(ctl).disabled != off:
                self._w(ctl).disabled, relabel = off, True
        if relabel:
            self._w("#g-model").refresh_labels()
        self._w("#bars").analysis = a
        self._put("#hw-info", plan_texts.hardware_text(a, self.detection))
        self._put("#model-info", plan_texts.model_text(a))
        self._put("#recommend", plan_texts.recommend_text(a))
        self.show_verdict()

    def input_problems(self) -> list[Problem]:
        return [
            Problem(
                "error",
                path,
                why,
                "until it is fixed, the bars show the last valid value and Export and Run are blocked",
            )
            for path, why in self.input_errors.items()
        ]

    def show_verdict(self) -> None:
        """Problems, the tab's label, the field marks, Export/Run enabled or not."""
        a = self.analysis
        problems = self.input_problems() + a.problems
        self._w("#problem-list").show(problems)
        self._w("#preview").show(a.ds, a.base_error) if self.tab == "json" else None
        n_err = sum(p.severity == "error" for p in problems)
        self.show_tabs(len(problems), n_err)
        marks = {p.field: p.message for p in a.errors}
        marks.update(self.input_errors)
        for g in self._w("groups"):
            g.show_errors(self.input_errors, marks)
        blocked = bool(n_err)
        was = self._shown.get("blocked")
        for b in ("#export", "#run", "#probe"):
            self._w(b).disabled = blocked
        if blocked:
            self._put("#blocked", f"✖ blocked by {n_err} error{'s' if n_err > 1 else ''}")
        else:
            self._put("#blocked", f"plan: {self.plan_path}" if self.plan_path else "")
        if blocked != was:
            self._shown["blocked"] = blocked
            self._w("#blocked").set_class(blocked, "-blocked")
            self.refresh_bindings()

    def show_tabs(self, n_problems: int = 0, n_errors: int = 0) -> None:
        tabs = self._w("#tabs")
        labels = (
            ("problems", f"Problems ({n_problems})" if n_problems else "Problems", "bold #ff6b6b" if n_errors else ""),
            ("json", "DeepSpeed JSON", ""),
        )
        if tabs.labels != labels:
            tabs.labels = labels
        tabs.active = self.tab

    @on(TabBar.Picked)
    def _tab_picked(self, event: TabBar.Picked) -> None:
        self.action_show_tab(event.tab)

    def _w(self, selector: str) -> Any:
        """A widget by selector, looked up once (show_analysis runs on every keystroke)."""
        found = self._widgets.get(selector)
        if found is None:
            if selector == "fields":
                found = self.query_one(PlanForm).fields()
            elif selector == "groups":
                found = list(self.query(FieldGroup))
            else:
                found = self.query_one(selector)
            self._widgets[selector] = found
        return found

    def _put(self, selector: str, content) -> None:
        """Set a note only when its content differs."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            self._w(selector).content = content
