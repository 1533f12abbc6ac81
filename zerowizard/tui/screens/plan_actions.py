"""The plan screen's actions: one per intent, reached alike by key, button and command palette.

A mixin of :class:`~.plan_screen.PlanScreen` (which owns the plan and the analysis).
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.screen import Screen

from zerowizard.core.analysis import Analysis
from zerowizard.core.memory import Variant
from zerowizard.core.plan import Plan, PlanError

from .. import files
from ..widgets.json_preview import JsonPreview
from .dialogs import PathsDialog

GUARDED = ("export", "run", "probe")  # refused while the plan is blocked


class PlanActions(Screen):
    """Actions over the state :class:`~.plan_screen.PlanScreen` owns."""

    analysis: Analysis
    plan: Plan
    plan_path: str | None
    tab: str
    input_errors: dict[str, str]

    @property
    def blocked(self) -> bool:
        raise NotImplementedError

    def show_verdict(self) -> None:
        raise NotImplementedError

    def show_tabs(self, n_problems: int = 0, n_errors: int = 0) -> None:
        raise NotImplementedError

    def sync_fields(self) -> None:
        raise NotImplementedError

    def apply_variant(self, v: Variant) -> None:
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in GUARDED and self.blocked:
            return None  # shown disabled in the key bar
        return True

    def refuse_if_blocked(self) -> bool:
        if self.blocked:
            self.notify("fix the errors first (see Problems)", severity="error")
            return True
        return False

    # ---- view ---------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self.tab = tab
        self.query_one("#problem-list").display = tab == "problems"
        preview = self.query_one("#preview", JsonPreview)
        preview.display = tab == "json"
        if tab == "json":
            preview.show(self.analysis.ds, self.analysis.base_error)
        self.show_tabs()
        self.show_verdict()

    def action_toggle_form(self) -> None:
        """Collapse the form (the bars take the width); on a tiny terminal, switch form and bars."""
        self.toggle_class("-form-open" if self.has_class("-tiny") else "-form-hidden")

    def action_use_recommended(self) -> None:
        a = self.analysis
        if a.recommended is not None:
            self.apply_variant(a.recommended.variant)
        elif a.fix is not None:
            self.notify(f"nothing fits; try: {a.fix.description}", severity="warning")
        else:
            self.notify("nothing fits on this hardware", severity="warning")

    # ---- files --------------------------------------------------------------------------
    def _default_plan_path(self) -> str:
        return self.plan_path or "zerowizard.yaml"

    def action_export(self) -> None:
        if self.refuse_if_blocked():
            return
        folder = Path(self._default_plan_path()).parent

        def done(paths: dict | None) -> None:
            if paths:
                self.do_export(paths["ds"], paths["plan"])

        fields = [("ds", "DeepSpeed JSON", str(folder / "ds.json")), ("plan", "Plan (YAML)", self._default_plan_path())]
        self.app.push_screen(PathsDialog("Export", fields, ok="Write"), done)

    def do_export(self, ds_path: str, plan_path: str) -> None:
        if self.refuse_if_blocked():
            return
        try:
            written = files.export(self.analysis, ds_path, plan_path)
        except (OSError, ValueError) as exc:
            self.notify(str(exc), title="Export failed", severity="error")
            return
        self.plan_path = str(plan_path)
        self.show_verdict()
        self.notify("\n".join(map(str, written)), title="Exported")

    def action_save(self) -> None:
        def done(paths: dict | None) -> None:
            if paths:
                self.do_save(paths["plan"])

        fields = [("plan", "Plan (YAML)", self._default_plan_path())]
        self.app.push_screen(PathsDialog("Save plan", fields, ok="Save"), done)

    def do_save(self, path: str) -> None:
        try:
            self.plan_path = str(files.save(self.plan, path))
        except (OSError, ValueError) as exc:  # ValueError: InputError (a directory, a device...)
            self.notify(str(exc), title="Save failed", severity="error")
            return
        if self.input_errors:
            self.notify(
                "saved the last valid values; fields with text that is not valid were left out",
                title=f"Plan saved: {self.plan_path}",
                severity="warning",
            )
        else:
            self.notify(self.plan_path, title="Plan saved")
        self.show_verdict()

    def action_load(self) -> None:
        def done(paths: dict | None) -> None:
            if paths:
                self.load_from(paths["plan"])

        fields = [("plan", "Plan (YAML)", self._default_plan_path())]
        self.app.push_screen(PathsDialog("Load plan", fields, ok="Load"), done)

    def load_from(self, path: str) -> bool:
        try:
            plan = files.load(path)
        except PlanError as exc:
            self.notify("\n".join(exc.errors), title=f"Cannot load {path}", severity="error", timeout=10)
            return False
        self.plan_path = path
        self.input_errors.clear()
        self.plan = plan
        self.sync_fields()
        self.notify(path, title="Plan loaded")
        return True

    # ---- runs ---------------------------------------------------------------------------
    def run_folder(self) -> str:
        """The plan's output folder, else a new one: work_dirs/<model>_<method>_<time>."""
        name = f"{Path(self.plan.model.name).name}_{self.plan.method.type}_{time.strftime('%Y%m%d_%H%M%S')}"
        return self.plan.output or str(Path("work_dirs") / name)

    def action_run(self) -> None:
        if self.refuse_if_blocked():
            return
        from .run_screen import RunScreen

        self.app.push_screen(RunScreen(self.plan, self.analysis, self.run_folder()))

    def action_runs(self) -> None:
        from .runs_screen import RunsScreen

        self.app.push_screen(RunsScreen())

    def action_probe(self) -> None:
        if self.refuse_if_blocked():
            return
        from .probe_screen import ProbeScreen, probe_available

        if not probe_available():
            self.notify("the probe is not in this build yet (zerowizard/runner/probe.py)", severity="warning")
            return
        self.app.push_screen(ProbeScreen(self.plan, self.analysis))
