"""The final DeepSpeed JSON, syntax highlighted, with the fields the build changed marked."""

from __future__ import annotations

import json

from rich.style import Style
from rich.text import Span, Text
from textual.widgets import Static

MARK = "#e5c07b"


def json_lines(obj, indent: int = 2) -> list[tuple[str, str]]:
    """Pretty JSON as (dotted path, line) pairs, formatted like ``json.dumps(indent=2)``."""
    out: list[tuple[str, str]] = []

    def walk(value, path: str, depth: int, prefix: str, comma: str) -> None:
        pad = " " * (indent * depth)
        if isinstance(value, dict) and value:
            out.append((path, f"{pad}{prefix}{{"))
            items = list(value.items())
            for i, (k, v) in enumerate(items):
                walk(
                    v, f"{path}.{k}" if path else k, depth + 1, json.dumps(k) + ": ", "," if i < len(items) - 1 else ""
                )
            out.append((path, f"{pad}}}{comma}"))
        else:
            out.append((path, f"{pad}{prefix}{json.dumps(value)}{comma}"))

    walk(obj, "", 0, "", "")
    return out


def _no_background(style):
    style = Style.parse(style) if isinstance(style, str) else style
    return Style(color=style.color, bold=style.bold, italic=style.italic, underline=style.underline)


def render_preview(config: dict | None, overrides=(), error: str = "") -> Text:
    if config is None:
        return Text(error or "no DeepSpeed config: fix the base (deepspeed) first", "#ff6b6b")
    marked = {o.key: o for o in overrides if o.kind != "removed"}
    from rich.syntax import Syntax  # pygments: imported on first use, after the first frame

    lines = json_lines(config)
    code = "\n".join(line for _, line in lines)
    body = Syntax(code, "json", theme="monokai").highlight(code)
    body.rstrip()
    body.style = ""
    body.spans = [Span(sp.start, sp.end, _no_background(sp.style)) for sp in body.spans]
    out = Text()
    for (path, _), text in zip(lines, body.split("\n")):
        o = marked.get(path)
        if o is not None and not text.plain.rstrip().endswith(("{", "[")):
            text.stylize("bold")
            out.append("● ", MARK)
            out.append_text(text)
            out.append(f"  ← {o.kind}", f"italic {MARK}")
        else:
            out.append("  ")
            out.append_text(text)
        out.append("\n")
    if overrides:
        out.append("\nChanged from the base:\n", "bold")
        for o in overrides:
            out.append("● ", MARK)
            out.append(o.describe() + "\n", "dim")
    out.rstrip()
    return out


class JsonPreview(Static):
    """Shows a zerowizard.core.dsconfig.DsBuild (or, without one, why not)."""

    _key: tuple | None = None
    _painted = False

    def show(self, build, error: str = "") -> None:
        key: tuple
        if build is None:
            key = ("error", error)
        else:
            key = (json.dumps(build.config, sort_keys=True, default=str), tuple(o.describe() for o in build.overrides))
        if key == self._key:
            return  # highlighting is the slowest part of a repaint: skip it when nothing changed
        self._key = key
        if not self._painted:  # the first one waits for the first frame (start-up time)
            self._painted = True
            self.call_after_refresh(self._paint, build, error)
        else:
            self._paint(build, error)

    def _paint(self, build, error: str) -> None:
        if build is None:
            self.update(render_preview(None, error=error))
        else:
            self.update(render_preview(build.config, build.overrides))
