"""DeepSpeed's own verdict on a DeepSpeed JSON, from a child process (the core stays light).

``zerowizard validate FILE.json --deepspeed-check`` asks the installed DeepSpeed to parse two
configs, in one child (one import of DeepSpeed, a few seconds):

- the file as HF Trainer hands it to DeepSpeed: each ``"auto"`` it fills, filled (from the plan,
  the same values zerowizard's export uses), everything else as written;
- the exported config (what ``zerowizard --export`` writes for the same plan and flags).

It also learns which top-level keys the installed version reads: a key it never looks up is
silently ignored, so it is an error here, with the closest key the version does read.
Nothing here imports DeepSpeed (``zerowizard.runner.dsparse`` does, in the child).
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from .dsconfig import DsBuild
from .problems import Problem
from .text import did_you_mean, excerpt

TIMEOUT_S = 180  # importing DeepSpeed takes 5-30 s on a loaded machine
MARK = "ZW-VERDICT "


@dataclass(frozen=True)
class Verdict:
    version: str | None
    known_keys: frozenset[str] = frozenset()
    errors: dict[str, list[str]] = field(default_factory=dict)  # config name -> DeepSpeed's errors
    failure: str | None = None  # why DeepSpeed could not be asked

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "ran": self.failure is None,
            "failure": self.failure,
            "errors": self.errors,
        }


def installed_version() -> str | None:
    """The installed DeepSpeed's version without importing it (None: not installed)."""
    if importlib.util.find_spec("deepspeed") is None:
        return None
    try:
        return importlib.metadata.version("deepspeed")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def hf_view(raw: dict, build: DsBuild, world_size: int) -> dict:
    """``raw`` as HF Trainer passes it to DeepSpeed: the "auto" values it fills, filled with the
    values the export resolved (``build``); every other value as written."""
    cfg = copy.deepcopy(raw)
    for o in build.overrides:
        if o.kind == "auto":
            _put(cfg, o.key, o.new)
    if cfg.get("train_batch_size") == "auto":
        mb = build.config.get("train_micro_batch_size_per_gpu")
        ga = build.config.get("gradient_accumulation_steps")
        if isinstance(mb, int) and isinstance(ga, int):
            cfg["train_batch_size"] = mb * ga * world_size
    return cfg


def _put(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            return
        node = nxt
    node[parts[-1]] = value


def ask(configs: dict[str, dict], world_size: int, *, timeout: float = TIMEOUT_S) -> Verdict:
    """Run DeepSpeed's parser on each config in a child process. Never raises: a missing
    DeepSpeed, a crash or a timeout is the Verdict's ``failure``."""
    if installed_version() is None:
        return Verdict(None, failure=f"DeepSpeed is not installed in this Python ({sys.executable})")
    request = json.dumps({"world_size": world_size, "configs": configs})
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "zerowizard.runner.dsparse"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return Verdict(installed_version(), failure=f"DeepSpeed's parser did not answer within {timeout:.0f} s")
    except OSError as exc:
        return Verdict(installed_version(), failure=f"cannot start Python: {exc.strerror or exc}")
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith(MARK)), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Verdict(
            installed_version(), failure=f"DeepSpeed's parser failed (exit {proc.returncode}): {excerpt(tail, 200)}"
        )
    out = json.loads(line[len(MARK) :])
    if out.get("error"):
        return Verdict(out.get("version"), failure=f"DeepSpeed cannot be imported: {out['error']}")
    return Verdict(
        out["version"],
        frozenset(out["known_keys"]),
        {name: r["errors"] for name, r in out["results"].items()},
    )


WHAT = {
    "file": 'the file as HF Trainer passes it (its "auto" values filled)',
    "export": "the exported config (zerowizard --export)",
}


def verdict_problems(verdict: Verdict, raw: dict) -> tuple[list[Problem], set[str]]:
    """Problems from a verdict, and the top-level keys it judged (their static "unknown key"
    problems are replaced by the installed version's word)."""
    if verdict.failure is not None:
        fix = "install DeepSpeed, or leave out --deepspeed-check" if verdict.version is None else ""
        return [Problem("error", "deepspeed", f"--deepspeed-check could not run: {verdict.failure}", fix)], set()
    version = verdict.version
    out = []
    for name, errors in verdict.errors.items():
        for err in errors:
            out.append(Problem("error", "deepspeed", f"DeepSpeed {version} refuses {WHAT.get(name, name)}: {err}", ""))
    judged = set()
    for key in raw:
        if isinstance(key, str) and key not in verdict.known_keys:
            judged.add(key)
            out.append(
                Problem(
                    "error",
                    excerpt(key, 60, quote=False),
                    f"DeepSpeed {version} does not read this key: it would silently ignore it",
                    did_you_mean(key, verdict.known_keys, "remove it"),
                )
            )
    return out, judged
