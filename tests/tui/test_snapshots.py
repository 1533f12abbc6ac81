"""SVG snapshots of the key screens at three sizes (Textual pinned to 8.2.8: snapshots change
between releases). 80×24 is the smallest the layout is built for: every figure and verdict shows.

Update after an intended change:  pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from .scenes import SCENES

SIZES = [(80, 24), (120, 36), (200, 60)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("name", ["plan", "blocked", "json", "run", "help"])
def test_screen_snapshot(snap_compare, name, size):
    factory, before = SCENES[name]
    assert snap_compare(factory(), terminal_size=size, run_before=before)
