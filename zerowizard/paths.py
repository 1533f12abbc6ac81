"""Where the shipped presets live (the repository's presets/ folder, or a copy inside the package)."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
PRESETS = _HERE.parent / "presets" if (_HERE.parent / "presets").is_dir() else _HERE / "presets"
