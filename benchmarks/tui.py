"""The TUI's two latencies: start to first frame, and a field change to the bars' repaint.

1. First frame: wall time from spawning `python` to the app's Ready event (Textual sends it once the
   first frame has been displayed), for the same app `zerowizard` opens, headless. Printed beside
   `python -c "import textual.app"`, the floor. Target: under 1 s on this machine.
2. Repaint: in one process, 100x30, the focused GPUs-per-node field is typed into, one key at a time
   as the terminal driver delivers keys ("4", then "8" makes 48, backspace makes 4 again, ...), with an
   idle pause between keys. For each keystroke, the time until (a) the memory bars have rendered the
   new analysis and (b) the frame holding them has been composed and handed to the driver (headless:
   not written to a terminal). Target for (a) and (b): median under 16 ms. Keys rather than
   `Input.value = ...`: a key goes through the app's key dispatch and changes the text's length, as
   typing does (setting 4 <-> 8 skipped both). The hooks set an asyncio.Event: no polling loop
   takes turns on the UI thread while it is measured.

    python benchmarks/tui.py [--runs 5] [--changes 60]    (--runs 0: the repaint only)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_FRAME = r"""
import time, sys
from zerowizard.core.plan import Plan
from zerowizard.tui.app import make_app
app = make_app(Plan(), None)

class FirstFrame(type(app)):  # the factory's app, plus a hook on Ready (sent after the first frame)
    def on_ready(self):
        sys.stderr.write(f"READY {time.time()}\n")
        self.exit()

app.__class__ = FirstFrame
app.run(headless=True, size=(100, 30))
"""


def first_frame(runs: int) -> tuple[float, float]:
    frames, floors = [], []
    for _ in range(runs):
        t = time.time()
        r = subprocess.run([sys.executable, "-c", FIRST_FRAME], capture_output=True, text=True, cwd=ROOT, timeout=60)
        line = next((x for x in r.stderr.splitlines() if x.startswith("READY ")), None)
        if line is None:
            raise SystemExit(f"the app did not start:\n{r.stderr[-2000:]}")
        frames.append(float(line.split()[1]) - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import textual.app"], check=True)
        floors.append(time.perf_counter() - t)
    return statistics.median(frames), statistics.median(floors)


async def repaint(changes: int) -> tuple[list[float], list[float], dict]:
    from textual import events
    from textual.widgets import Input

    from zerowizard.core.hardware import Detection
    from zerowizard.core.plan import Plan, update
    from zerowizard.tui.app import make_app
    from zerowizard.tui.screens.plan_screen import PlanScreen
    from zerowizard.tui.widgets.memory_bars import MemoryBars

    plan = update(Plan(), "hardware", gpu="A100-80GB", gpus_per_node=4, host_ram_gb=512.0)
    plan = update(plan, "model", name="llama-3-8b")
    app = make_app(plan, None, detection=Detection(note="benchmark"))
    marks: dict[str, float] = {}
    repainted = asyncio.Event()  # set by the hooks: no polling task competing for the UI thread

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter())
        marks.setdefault(name + "_cpu", time.thread_time())

    render, show = MemoryBars.render_line, PlanScreen.show_analysis

    def timed_render(self, y):
        out = render(self, y)
        if "plan" in marks and self._lines_key and self._lines_key[0] == id(self.analysis):
            mark("bars")  # a line of the new bars handed to the compositor (only changed lines repaint)
        return out

    def timed_show(self, a):
        mark("plan")
        show(self, a)
        mark("shown")

    MemoryBars.render_line, PlanScreen.show_analysis = timed_render, timed_show
    bars_ms, frame_ms, frames = [], [], []
    stages: dict[str, list[float]] = {
        k: [] for k in ("plan", "shown", "plan_cpu", "shown_cpu", "bars_cpu", "frame_cpu")
    }
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            display = app._display

            def timed_display(screen, renderable):
                if renderable is not None and "t0" in marks:
                    frames[-1] += 1  # every frame composed since the key, the bars' one included
                    if "bars" in marks:
                        mark("frame")  # the frame with the new bars goes to the driver
                        repainted.set()
                return display(screen, renderable)

            app._display = timed_display
            box = app.plan_screen.query_one("#f-hardware-gpus_per_node", Input)
            box.focus()
            await pilot.pause()
            box.action_end()  # focusing selected the text: put the cursor after it, as a person would
            await pilot.pause()
            for i in range(changes):
                marks.clear()
                repainted.clear()
                # one keystroke, as the terminal driver delivers it: "4" -> "48" -> "4" -> ... (both
                # plans valid, as in most edits; 1 <-> 16 would flip an error on every key)
                key = events.Key("8", "8") if i % 2 == 0 else events.Key("backspace", None)
                key.set_sender(app)
                frames.append(0)
                t0, c0 = time.perf_counter(), time.thread_time()
                marks["t0"] = t0
                app._driver.send_message(key)
                try:
                    await asyncio.wait_for(repainted.wait(), 2)
                except asyncio.TimeoutError:
                    raise SystemExit("no repaint within 2 s") from None
                if box.value != ("48" if i % 2 == 0 else "4"):
                    raise SystemExit(f"the keystroke did not reach the field: {box.value!r}")
                bars_ms.append((marks["bars"] - t0) * 1000)
                frame_ms.append((marks["frame"] - t0) * 1000)
                for k in ("plan", "shown"):
                    stages[k].append((marks[k] - t0) * 1000)
                for k in ("plan_cpu", "shown_cpu", "bars_cpu", "frame_cpu"):
                    stages[k].append((marks[k] - c0) * 1000)
                await pilot.pause()  # >= 20 ms idle between keystrokes, as between a person's keys
            if app.plan_screen.plan.hardware.gpus_per_node not in (4, 48):
                raise SystemExit("the field changes did not reach the plan")
    finally:
        MemoryBars.render_line, PlanScreen.show_analysis = render, show
    stages["frames"] = frames
    return bars_ms, frame_ms, stages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="start-ups to time (median; 0: skip)")
    parser.add_argument("--changes", type=int, default=60, help="keystrokes to time (median)")
    args = parser.parse_args(argv)
    if args.runs:  # --runs 0: the repaint only
        frame, floor = first_frame(args.runs)
        print(f"start to first frame:        {frame * 1000:7.0f} ms  (target < 1000 ms; median of {args.runs})")
        print(f'python -c "import textual.app": {floor * 1000:5.0f} ms  (the floor)')
    bars, frames, stages = asyncio.run(repaint(args.changes))
    med = statistics.median
    p90 = lambda xs: statistics.quantiles(xs, n=10)[-1]  # noqa: E731
    print(
        f"keystroke -> bars render:     {med(bars):7.2f} ms median, p90 {p90(bars):.2f} ms "
        f"(target < 16 ms; {args.changes} keystrokes)"
    )
    print(f"keystroke -> frame with bars: {med(frames):7.2f} ms median, p90 {p90(frames):.2f} ms")
    print(
        f"  wall, of which: the change reaches the screen {med(stages['plan']):.2f} ms, analyze() and the "
        f"hand-down are done {med(stages['shown']):.2f} ms; the rest is Textual's compositor. Frames per "
        f"keystroke: {med(stages['frames']):.0f} median, {max(stages['frames'])} at most (1: the typed "
        "character and the bars in one frame)"
    )
    print(
        f"  CPU time of the UI thread: {med(stages['plan_cpu']):.2f} ms to reach the screen, "
        f"{med(stages['shown_cpu']):.2f} ms to hand the analysis down, "
        f"{med(stages['bars_cpu']):.2f} ms to the bars, "
        f"{med(stages['frame_cpu']):.2f} ms to the frame (what the wall figures cost on an idle core)"
    )
    print(
        f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(figures above the targets on a busy machine: rerun when it is idle)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
