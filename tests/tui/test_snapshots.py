"""SVG snapshots of the key screens (Textual pinned to 8.2.8: snapshots change between releases).

Update after an intended change:  pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from .conftest import SIZE
from .scenes import SCENES


@pytest.mark.parametrize("name", ["plan", "blocked", "json", "run"])
def test_screen_snapshot(snap_compare, name):
    factory, before = SCENES[name]
    assert snap_compare(factory(), terminal_size=SIZE, run_before=before)
