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


def _keys_read(func: ast.AST, name: str = "ev") -> set[str]:
    """Every ``ev["key"]`` and ``ev.get("key")`` in a function."""
    keys = set()
    for node in ast.walk(func):
        sub = isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name
        if sub and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
    return keys


def test_the_headless_printer_reads_only_keys_of_the_schema():
    from zerowizard.runner import headless

    tree = ast.parse(Path(headless.__file__).read_text())
    by_type = {cls.__name__: kind for kind, cls in SCHEMAS.items()}
    checked = 0
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.args.args):
        ann = fn.args.args[0].annotation
        if isinstance(ann, ast.Name) and ann.id in by_type:
            assert _keys_read(fn) <= schema_keys(by_type[ann.id]), fn.name
            checked += 1
    assert checked == len(SCHEMAS)


def test_the_tui_run_screen_reads_only_keys_of_the_schema():
    import zerowizard.tui.screens.run_screen as screen

    tree = ast.parse(Path(screen.__file__).read_text())
    every = set().union(*(schema_keys(k) for k in SCHEMAS))
    funcs = [fn for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)]
    read = set().union(*(_keys_read(fn, var) for fn in funcs for var in ("ev", "end", "s")))  # events it holds
    assert read and read <= every, read - every
