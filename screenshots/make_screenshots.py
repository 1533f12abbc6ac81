"""Render the README's screenshots: SVG (Textual) and PNG (cairosvg) of the key screens.

    python screenshots/make_screenshots.py            # all scenes, 100x30
    python screenshots/make_screenshots.py run --size 120x36

Scenes are pinned (catalog GPU, fixed host RAM, no NVML, a recorded run), so reruns give the same
pictures on any machine. PNGs need `pip install cairosvg` (and the system's libcairo).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.tui.scenes import SCENES  # noqa: E402

MONO = '"DejaVu Sans Mono", "Liberation Mono", monospace'


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
    args = parser.parse_args(argv)
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
