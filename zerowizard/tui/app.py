"""The app and its factory (used by the CLI, the tests, the screenshots and the benchmark)."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from zerowizard.core.hardware import Detection, cached_detection
from zerowizard.core.plan import Plan

from .screens.plan_screen import PlanScreen


class ZeroWizardApp(App):
    """Plan a DeepSpeed ZeRO fine-tune, see whether it fits, export it, run it."""

    CSS_PATH = "zerowizard.tcss"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit")]
    TITLE = "zerowizard"
    SUB_TITLE = "DeepSpeed ZeRO planner"

    def __init__(self, plan: Plan, plan_path: str | None = None, *, detection: Detection | None = None):
        super().__init__()
        self.plan, self.plan_path = plan, plan_path
        self.detection = detection if detection is not None else cached_detection()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.push_screen(PlanScreen(self.plan, self.plan_path, self.detection))

    @property
    def plan_screen(self) -> PlanScreen:
        return next(s for s in self.screen_stack if isinstance(s, PlanScreen))


def make_app(
    plan: Plan | None = None, plan_path: str | None = None, *, detection: Detection | None = None
) -> ZeroWizardApp:
    """The app for ``plan`` (saved to / loaded from ``plan_path``). ``detection`` pins what NVML
    reports (tests and screenshots pass a fixed one)."""
    return ZeroWizardApp(plan if plan is not None else Plan(), plan_path, detection=detection)
