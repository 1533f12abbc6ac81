"""Probe: run a few real steps of each candidate variant and show measured against predicted.

Uses ``zerowizard.runner.probe`` (its Python API, from a worker thread with a progress
callback) where this build has it.
"""

from __future__ import annotations

import importlib.util


def probe_available() -> bool:
    return importlib.util.find_spec("zerowizard.runner.probe") is not None
