"""Past runs (F6 on the plan screen): the runs in ./work_dirs, newest first. Enter shows one
(its recorded events and log), r resumes one from its newest checkpoint, l loads its plan."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import getters
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import PlanError, load_plan

from ..runs import PastRun, past_runs
from ..widgets.keybar import KeyBar

STATUS_STYLE = {"completed": "#61d68a", "interrupted": "#e5c07b", "failed": "#ff6b6b", "unfinished": "#8a8f98"}

if TYPE_CHECKING:
    from ..app import ZeroWizardApp


class RunsScreen(Screen):
    if TYPE_CHECKING:  # the app's own attributes (plan_screen, detection), as Textual's getters type it
        app = getters.app(ZeroWizardApp)

    BINDINGS = [
        Binding("enter", "view", "View"),
        Binding("r", "resume", "Resume", tooltip="continue the run from its newest checkpoint"),
        Binding("l", "load", "Load plan", tooltip="edit this run's plan on the plan screen"),
        Binding("escape,b", "back", "Back"),
    ]

    def __init__(self, root: str | Path = "work_dirs"):
        super().__init__()
        self.root = Path(root)
        self.runs: list[PastRun] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="runs"):
            yield Label(f"Runs in {self.root}/ (newest first)", id="runs-title")
            yield OptionList(id="runs-list")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.runs = past_runs(self.root)
        ol = self.query_one(OptionList)
        if not self.runs:
            hint = f"no runs in {self.root}/ yet: Run (ctrl+r) on the plan starts one"
            ol.add_option(Option(Text(hint), disabled=True))
        for r in self.runs:
            line = Text()
            line.append(f"{r.status:<11}", STATUS_STYLE.get(r.status, ""))
            line.append(f" {r.name}", "bold")
            line.append(f"  {r.model} {r.method} · step {r.progress}")
            if r.loss is not None:
                line.append(f" · loss {r.loss:.4f}")
            line.append(f" · checkpoint {r.checkpoint}" if r.checkpoint is not None else " · no checkpoint", "dim")
            line.append(f" · {r.when}", "dim")
            ol.add_option(Option(line))
        if self.runs:
            ol.highlighted = 0
        ol.focus()

    def selected(self) -> PastRun | None:
        i = self.query_one(OptionList).highlighted
        return self.runs[i] if i is not None and 0 <= i < len(self.runs) else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_view()

    def _plan(self, run: PastRun):
        try:
            return load_plan(run.path / "plan.yaml")
        except PlanError as exc:
            self.notify("\n".join(exc.errors), title=f"{run.name}: no readable plan", severity="error")
            return None

    def action_view(self) -> None:
        run = self.selected()
        plan = self._plan(run) if run else None
        if run is None or plan is None:
            return
        from .run_screen import RunScreen

        log = run.path / "logs" / "launcher.log"
        lines = log.read_text(errors="replace").splitlines()[-500:] if log.is_file() else []
        events = run.path / "events.jsonl"
        self.app.push_screen(
            RunScreen(plan, analyze(plan, detection=self.app.detection), run.path, replay=events, replay_log=lines)
        )

    def action_resume(self) -> None:
        run = self.selected()
        if run is None:
            return
        if run.checkpoint is None:
            self.notify(f"{run.name} has no checkpoint to resume from", severity="warning")
            return
        plan = self._plan(run)
        if plan is None:
            return
        from .run_screen import RunScreen

        self.app.push_screen(RunScreen(plan, analyze(plan, detection=self.app.detection), run.path, resume=True))

    def action_load(self) -> None:
        run = self.selected()
        if run is not None and self.app.plan_screen.load_from(str(run.path / "plan.yaml")):
            self.app.pop_screen()

    def action_back(self) -> None:
        self.app.pop_screen()
