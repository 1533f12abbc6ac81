"""The app and its factory (used by the CLI, the tests, the screenshots and the benchmark)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input

from zerowizard.core.hardware import Detection, cached_detection
from zerowizard.core.plan import Plan

from .screens.plan_screen import PlanScreen


class ZeroWizardApp(App):
    """Plan a DeepSpeed ZeRO fine-tune, see whether it fits, export it, run it."""

    CSS_PATH = "zerowizard.tcss"
    BINDINGS = [
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help_key", "Help", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+p", "command_palette", "Palette", show=False),
    ]
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

    # ---- help and the palette -----------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "help_key":
            # "?" is text in a path box, a dialog or a picker's search: it types there (a number
            # box lets it through: see NumberField.check_consume_key)
            from .widgets.fields import NumberField

            if isinstance(self.focused, Input) and not isinstance(self.focused, NumberField):
                return False
        return True

    def action_help(self) -> None:
        from .screens.help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_help_key(self) -> None:
        self.action_help()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "the legend, every field and every key (F1 or ?)", self.action_help)
        if isinstance(screen, PlanScreen):
            from .commands import plan_commands

            yield from plan_commands(screen)

    # ---- quitting -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        """Quit; while a run is going, ask first, and stop it cleanly (its event stream gets its
        end) before leaving."""
        from .screens.dialogs import ConfirmDialog
        from .screens.run_screen import RunScreen

        run = next((s for s in self.screen_stack if isinstance(s, RunScreen) and s.running), None)
        if run is None:
            self.exit()
            return

        async def answered(stop: bool | None) -> None:
            if stop:
                await run.stop_and_wait()
                self.exit()

        await self.push_screen(
            ConfirmDialog("A run is going. Stop it (SIGINT, a clean stop) and quit?", "Stop and quit", "Keep running"),
            answered,
        )


def make_app(
    plan: Plan | None = None, plan_path: str | None = None, *, detection: Detection | None = None
) -> ZeroWizardApp:
    """The app for ``plan`` (saved to / loaded from ``plan_path``). ``detection`` pins what NVML
    reports (tests and screenshots pass a fixed one)."""
    return ZeroWizardApp(plan if plan is not None else Plan(), plan_path, detection=detection)
