"""Run the real CLI in this process on hostile input and check the promise each time.

The promise (README, HELPERS): bad input gets exit 2 and one clear line; no traceback, no hang;
nothing of the user's overwritten or half-written. ``run_cli`` calls ``zerowizard.cli.main(argv)``
with stdout/stderr captured, stdin a closed non-terminal (so the wizard can never open and wait)
and a per-case alarm (a hang fails the case instead of the whole run); ``Sandbox`` lays out the
files an attacker would aim at (an existing export, a symlink, a dangling symlink, a FIFO, a
folder) and tells exactly what changed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from zerowizard import cli

CASE_TIMEOUT_S = float(os.environ.get("ZEROWIZARD_FUZZ_TIMEOUT", "30"))  # a hang, not a slow case
TRACEBACK = "Traceback (most recent call last)"

VALID_PLAN = """\
model: tiny-llama
method: {type: lora, lora_r: 8}
hardware: {gpu: A100-80GB, gpus_per_node: 2}
batch: {micro_batch: 2, seq_len: 256}
deepspeed: deepspeed_zero2
"""
VALID_DS = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": 1,
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 2, "overlap_comm": True, "reduce_bucket_size": "auto"},
}
# A small Llama (the same shapes as the embedded tiny default).
VALID_MODEL = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}


class Hang(BaseException):
    """A case that did not answer in time (a BaseException: the CLI's guard must not swallow it)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def text(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv: list[str], cwd: Path, timeout: float = CASE_TIMEOUT_S) -> Result:
    """``zerowizard ARGV`` in this process, from ``cwd``."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    stdin = sys.stdin
    os.chdir(cwd)
    sys.stdin = io.StringIO("")  # not a terminal: the wizard must refuse, never wait for keys
    try:
        with redirect_stdout(out), redirect_stderr(err), time_limit(timeout):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:  # argparse's own errors (exit 2) and --help (exit 0)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = stdin
        os.chdir(here)
    return Result(code, out.getvalue(), err.getvalue())


def assert_answered(r: Result, crash_dir: Path, argv: object = None) -> None:
    """Exit 0 or 2, no traceback anywhere, the crash guard never reached, an error said as one."""
    where = f"argv={argv!r}\n{r.text()}"
    assert r.code in (0, 2), where
    assert TRACEBACK not in r.out and TRACEBACK not in r.err, where
    assert "internal error" not in r.err, where
    logs = sorted(crash_dir.glob("*.log")) if crash_dir.exists() else []
    assert not logs, where + "\n" + (logs[0].read_text()[-3000:] if logs else "")
    if r.code == 2:
        assert "error" in (r.err + r.out).lower(), where


def clear_crashes(crash_dir: Path) -> None:
    """So that one failing case does not fail every case after it."""
    if crash_dir.exists():
        for log in crash_dir.glob("*.log"):
            log.unlink()


# -- the files an attacker aims at ---------------------------------------------------------------------


def _entry(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    if stat.S_ISDIR(st.st_mode):
        return ("dir",)
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo",)
    return ("other", st.st_mode)


class Sandbox:
    """A folder with inputs (a valid plan, DeepSpeed JSON, model directory, data file) and
    export targets of every kind, and a snapshot to compare against."""

    TARGETS = (
        "out.json",
        "keep.json",  # an existing file: overwritten only by an export that succeeds
        "link.json",  # -> real.json: written through
        "dangling.json",  # -> created.json
        "fifo",  # must be refused, never opened (it would block)
        "dir",  # a folder
        "",
        "missing/x.json",
        "/dev/null",
    )

    def __init__(self, root: Path) -> None:
        self.path = Path(tempfile.mkdtemp(dir=root))
        p = self.path
        (p / "keep.json").write_text("precious\n")
        (p / "real.json").write_text("real\n")
        os.symlink("real.json", p / "link.json")
        os.symlink("created.json", p / "dangling.json")
        os.mkfifo(p / "fifo")
        (p / "dir").mkdir()
        (p / "dir" / "inside.txt").write_text("inside\n")
        (p / "plan.yaml").write_text(VALID_PLAN)
        (p / "ds.json").write_text(json.dumps(VALID_DS))
        (p / "model").mkdir()
        (p / "model" / "config.json").write_text(json.dumps(VALID_MODEL))
        (p / "data.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n')
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple]:
        out = {}
        for folder, dirs, files in os.walk(self.path):
            for name in dirs + files:
                full = Path(folder) / name
                out[str(full.relative_to(self.path))] = _entry(full)
        return out

    def changes(self) -> dict[str, tuple]:
        after = self.snapshot()
        keys = set(after) | set(self.before)
        return {k: (self.before.get(k), after.get(k)) for k in keys if self.before.get(k) != after.get(k)}

    def check(self, r: Result, written: set[str], argv: object = None) -> None:
        """Exit 2: nothing changed. Exit 0: only the named outputs (and a link's target) changed,
        links are still links, no temporary file is left behind."""
        where = f"argv={argv!r}\n{r.text()}"
        changed = self.changes()
        if r.code != 0:
            assert not changed, f"{where}\nchanged: {sorted(changed)}"
        else:
            allowed = set()
            for name in written:
                allowed.add(name)
                real = os.path.realpath(self.path / name)
                if real.startswith(str(self.path) + os.sep):
                    allowed.add(os.path.relpath(real, self.path))
            stray = {k for k in changed if k not in allowed and not k.startswith(("work_dirs", "missing"))}
            assert not stray, f"{where}\nchanged: {sorted(stray)}"
        leftovers = [
            k for k in self.snapshot() if k.rsplit("/", 1)[-1].startswith(".") and k.endswith((".tmp", ".bak"))
        ]
        assert not leftovers, f"{where}\nleft behind: {leftovers}"
        for name in ("link.json", "dangling.json"):
            assert os.path.islink(self.path / name), f"{where}\n{name} is no longer a symlink"
        assert stat.S_ISFIFO(os.lstat(self.path / "fifo").st_mode)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "/dev/null was replaced"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
