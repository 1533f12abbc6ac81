"""Typed events: every event the runner writes follows its kind's TypedDict (checked here in the
source, and over every event of every real run by conftest.check_ok); start-up is shown as
phase lines; harmless rank chatter and tracebacks stay in the rank logs."""

from __future__ import annotations

import ast
from pathlib import Path

from zerowizard.runner import events
from zerowizard.runner.events import SCHEMAS, schema_keys, schema_problems
from zerowizard.runner.headless import describe, interesting
from zerowizard.runner.supervise import _LogTail

RUNNER = Path(events.__file__).parent


def _emits():
    """(file, line, kind, keys) of every emit("kind", key=...) call in the runner."""
    for path in sorted(RUNNER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("emit", "_emit") or not node.args:
                continue
            kind = node.args[0]
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                yield path.name, node.lineno, kind.value, [k.arg for k in node.keywords if k.arg]


def test_every_emit_in_the_runner_follows_the_schema():
    found = list(_emits())
    assert {kind for _, _, kind, _ in found} >= {"start", "phase", "step", "checkpoint", "error", "fallback", "end"}
    bad = [(f, n, kind, k) for f, n, kind, keys in found for k in keys if k not in schema_keys(kind)]
    assert bad == []


def test_schema_problems_name_the_key():
    ok = {"event": "phase", "time": 1.0, "source": "rank0", "v": 1, "phase": "model", "message": "m", "rank": 0}
    assert schema_problems(ok) == []
    assert schema_problems({**ok, "phaze": "x"}) == ["phase: unknown key 'phaze'"]
    assert schema_problems({**ok, "rank": "0"}) and schema_problems({"event": "bogus"})
    assert set(SCHEMAS) == set(events.KINDS)


def test_start_up_phases_read_as_lines():
    line = describe({"event": "phase", "rank": None, "elapsed_s": 75, "message": "building DeepSpeed op x"})
    assert line == "[launcher 1m15s] building DeepSpeed op x"
    assert describe({"event": "phase", "rank": 0, "elapsed_s": 3, "message": "loading the model"}).startswith(
        "[rank 0 3s]"
    )
    fb = {"event": "fallback", "attempt": 2, "change": "micro batch 8 -> 4", "global_batch": 16}
    assert "attempt 2: micro batch 8 -> 4 (global batch 16)" in describe(fb)


def test_rank_chatter_and_tracebacks_stay_in_the_log(tmp_path):
    assert not interesting("/usr/bin/ld: cannot find -laio: No such file or directory")
    assert not interesting("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.")
    log = tmp_path / "rank0.log"
    tail = _LogTail(log)
    log.write_text(
        'loading\nTraceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
        "OSError: [Errno 28] No space left on device\nafter\n"
    )
    assert tail.shown() == ["loading", "OSError: [Errno 28] No space left on device", "after"]
