"""Render the README's screenshots: SVG (Textual) and PNG (cairosvg) of the key screens.

    python screenshots/make_screenshots.py --record   # first: a real 40-step run, recorded
    python screenshots/make_screenshots.py            # all scenes, 100x30
    python screenshots/make_screenshots.py run --size 120x36

Scenes are pinned (catalog GPU, fixed host RAM, no NVML, a recorded run), so reruns give the same
pictures on any machine. ``--record`` trains the tiny model for real with today's runner (two
CPU ranks, ``zerowizard run --headless``) and stores its event stream and its output as the
recording the run screen replays (tests/tui/data: the snapshot tests use the same one).
PNGs need `pip install cairosvg` (and the system's libcairo).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.tui.scenes import RUN_FOLDER, SCENES  # noqa: E402

MONO = '"DejaVu Sans Mono", "Liberation Mono", monospace'
DATA = ROOT / "tests" / "tui" / "data"


def record(steps: int = 40) -> None:
    """A real run of the tiny model with today's runner; its events and output become the recording."""
    from tests.tui.scenes import run_plan
    from zerowizard.core.plan import dump_plan
    from zerowizard.runner.events import read_events

    with tempfile.TemporaryDirectory(prefix="zerowizard-record-") as tmp:
        plan_file = Path(tmp) / "plan.yaml"
        plan_file.write_text(dump_plan(run_plan(steps)))
        cmd = [sys.executable, "-m", "zerowizard", "run", "--headless", "--plan", str(plan_file)]
        # an empty calibration store: the prediction shown is the formula's, not this machine's history
        calib = str(Path(tmp) / "calibration")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "ZEROWIZARD_CALIBRATION": calib}
        print("$", " ".join(cmd), f"(in {tmp})", file=sys.stderr)
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit(f"the run failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        events = Path(tmp) / RUN_FOLDER / "events.jsonl"
        if not any(e.get("event") == "end" and e.get("status") == "completed" for e in read_events(events)):
            raise SystemExit("the run ended without a completed end event")
        # the run folder as the app shows it when run from the project: relative, no temp prefix
        prefix = str(Path(tmp).resolve()) + "/"
        (DATA / "run_events.jsonl").write_text(events.read_text().replace(prefix, ""))
        (DATA / "run_log.txt").write_text(r.stdout.replace(prefix, ""))
    print(f"recorded: {DATA / 'run_events.jsonl'}, {DATA / 'run_log.txt'}", file=sys.stderr)


async def render(name: str, size: tuple[int, int], out: Path) -> Path:
    factory, before = SCENES[name]
    app = factory()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        if before is not None:
            await before(pilot)
        await pilot.pause()
        svg = out / f"{name}.svg"
        app.save_screenshot(filename=svg.name, path=str(out))
    return svg


def to_png(svg: Path) -> Path | None:
    try:
        import cairosvg
    except ImportError:
        print("  (no PNG: pip install cairosvg)", file=sys.stderr)
        return None
    png = svg.with_suffix(".png")
    # The SVG names Fira Code (browsers fetch it); cairo picks a proportional fallback when it is not
    # installed, which misaligns the columns. Ask for an installed monospace font instead.
    text = svg.read_text(encoding="utf-8").replace('"Fira Code"', MONO).replace("Fira Code,", MONO + ",")
    cairosvg.svg2png(bytestring=text.encode("utf-8"), write_to=str(png), output_width=1600)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenes",
        nargs="*",
        choices=[[], *SCENES],
        default=[],
        metavar="SCENE",
        help=f"which to render (default: all of {', '.join(SCENES)})",
    )
    parser.add_argument("--size", default="100x30", help="terminal size COLSxROWS (default 100x30)")
    parser.add_argument("--out", default=str(HERE), help="output folder (default: screenshots/)")
    parser.add_argument("--record", action="store_true", help="first record a real run for the run screen")
    args = parser.parse_args(argv)
    if args.record:
        record()
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.scenes or list(SCENES):
        svg = asyncio.run(render(name, (cols, rows), out))
        png = to_png(svg)
        print(svg, png or "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
