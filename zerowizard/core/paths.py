"""Where the shipped presets live.

An installed wheel carries them inside the package (``zerowizard/presets``, mapped from the
repository's top-level ``presets/`` by pyproject's package-dir); a source checkout or an editable
install reads the repository's ``presets/`` directly.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # .../zerowizard
_INSTALLED = _PACKAGE / "presets"
_CHECKOUT = _PACKAGE.parent / "presets"

PRESETS = _INSTALLED if (_INSTALLED / "deepspeed").is_dir() else _CHECKOUT
