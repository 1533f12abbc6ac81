"""Checkpoints that are either complete or absent, and a resume that checks before it launches.

Layout of a run folder's ``checkpoints/``::

    checkpoints/
      .staging/checkpoint-12/     being written by every rank (never resumed from)
      checkpoint-8/               committed: renamed here only after every rank finished
        zerowizard_complete.json  the marker, written last: every file's relative path and size,
                                  the step, the world size, the ZeRO stage, the batch layout
        trainer_state.json        the HF Trainer's state (global step, log history)
        latest                    DeepSpeed's tag file ("global_step8")
        global_step8/             DeepSpeed's shards: *model_states.pt, *optim_states.pt per rank
        rng_state_R.pth, model/adapter files, tokenizer
        global_step8_universal/   (after a world-size change) DeepSpeed's universal checkpoint
        latest_universal          its tag, with zerowizard_universal.json as its own marker

A save writes into ``.staging/checkpoint-N``; after a barrier rank 0 lists the files into the
marker (fsynced), renames the folder into place and fsyncs ``checkpoints/``. A node whose
staging folder is still there after that (node-local storage) commits its own copy. A save that
is interrupted leaves only ``.staging/``, which is cleared at the next save.

:func:`resumable` is what the launcher calls before it starts any rank: the newest checkpoint
that passes :func:`check`, and one note per newer one that does not. A checkpoint without the
marker (written by zerowizard before the marker existed, or copied by hand) is accepted when its
structure checks out file by file, with a note saying it was not committed with a marker.

Pure Python: the launcher imports this, so no torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "zerowizard_complete.json"
UNIVERSAL_MARKER = "zerowizard_universal.json"
STAGING = ".staging"
FORMAT = 1
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
MAX_JSON_BYTES = 64 * 1024**2  # trainer_state.json grows with the log history
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a resume needs to know about a checkpoint, from its marker or its files."""

    path: Path
    step: int
    world_size: int | None  # ranks that wrote it (DeepSpeed data-parallel size)
    zero_stage: int | None
    tag: str | None  # DeepSpeed's tag ("global_step8")
    micro_batch: int | None
    grad_accum: int | None
    marked: bool  # committed with a marker (False: an older zerowizard, or by hand)

    @property
    def global_batch(self) -> int | None:
        if self.world_size and self.micro_batch and self.grad_accum:
            return self.world_size * self.micro_batch * self.grad_accum
        return None


def checkpoints_dir(workdir: Path) -> Path:
    return Path(workdir) / "checkpoints"


def list_checkpoints(workdir: Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, newest (highest N) first; staging is not listed."""
    root = checkpoints_dir(workdir)
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = [(int(m.group(1)), p) for p in entries if (m := CHECKPOINT_RE.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def step_of(path: Path) -> int:
    m = CHECKPOINT_RE.fullmatch(Path(path).name)
    if not m:
        raise ValueError(f"{path} is not a checkpoint-N folder")
    return int(m.group(1))


def _read_json(path: Path) -> Any:
    """Parsed JSON, or ValueError with a short reason (missing, too large, not JSON)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{path.name} is {size:,} bytes, more than a checkpoint's JSON can be")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not readable JSON ({type(exc).__name__})") from None


def read_marker(path: Path) -> dict | None:
    """The marker's content; None when there is none; ValueError when it is damaged."""
    marker = Path(path) / MARKER
    if not marker.exists():
        return None
    data = _read_json(marker)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(f"{MARKER} has no file list")
    return data


# -- checks ---------------------------------------------------------------------------------


def _format_problem(path: Path) -> str | None:
    """A cheap structural check of one file (no torch): a torch zip archive must have its central
    directory, a safetensors file its header and all the data the header promises, a JSON file
    must parse. Catches truncation where no marker records the size."""
    name = path.name
    try:
        if name.endswith(TORCH_SUFFIXES):
            if path.stat().st_size == 0:
                return f"{name} is empty"
            with path.open("rb") as fh:
                head = fh.read(4)
            if head[:2] == b"PK":  # torch.save's zip format (legacy pickles are not checked)
                try:
                    with zipfile.ZipFile(path) as zf:
                        zf.infolist()
                except (zipfile.BadZipFile, OSError, EOFError):
                    return f"{name} is truncated or damaged (no zip directory)"
        elif name.endswith(".safetensors"):
            size = path.stat().st_size
            with path.open("rb") as fh:
                raw = fh.read(8)
                if len(raw) < 8:
                    return f"{name} is truncated (no header)"
                (n,) = struct.unpack("<Q", raw)
                if n > min(size, 100 * 1024**2):
                    return f"{name} is truncated or damaged (header length)"
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end != size:
                return f"{name} is truncated ({size:,} bytes, its header needs {8 + n + end:,})"
        elif name.endswith(".json") and name != MARKER:
            _read_json(path)
    except ValueError as exc:
        return str(exc)
    except (OSError, KeyError, TypeError, IndexError) as exc:
        return f"{name} cannot be read ({type(exc).__name__})"
    return None


def _deepspeed_problem(path: Path) -> str | None:
    """The ``latest`` tag names a folder here that holds the model states and one optimizer
    shard per rank (rank files numbered 0..N-1 without gaps)."""
    latest = path / "latest"
    if not latest.exists():
        return None if not any(path.glob("global_step*")) else "DeepSpeed's `latest` tag file is missing"
    try:
        tag = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "DeepSpeed's `latest` tag file is unreadable"
    if not tag or "/" in tag or tag in (".", "..") or not (path / tag).is_dir():
        return f"DeepSpeed's `latest` tag names {tag[:40]!r}, which is not a folder here"
    files = [p.name for p in (path / tag).iterdir()]
    if not any(f.endswith("model_states.pt") for f in files):
        return f"{tag}/ has no model states"
    shard = re.compile(r"zero_pp_rank_(\d+)_mp_rank_\d+_optim_states")
    ranks = sorted(int(m.group(1)) for f in files if (m := shard.search(f)))
    if ranks and ranks != list(range(len(ranks))):
        return f"{tag}/ lacks optimizer shards of some ranks (has {ranks})"
    return None


def _trainer_state_problem(path: Path, step: int) -> str | None:
    try:
        state = _read_json(path / "trainer_state.json")
    except ValueError as exc:
        return str(exc)
    if not isinstance(state, dict) or state.get("global_step") != step:
        got = state.get("global_step") if isinstance(state, dict) else None
        return f"trainer_state.json says step {got}, the folder says {step}"
    return None


def _marker_problem(path: Path) -> str | None:
    """Every file the marker lists is there with the size that was written."""
    try:
        marker = read_marker(path)
    except ValueError as exc:
        return str(exc)
    for rel, size in (marker or {}).get("files", {}).items():
        try:
            actual = (path / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} is {actual:,} bytes, {size:,} were written"
    return None


def _files_problem(path: Path) -> str | None:
    for dirpath, dirs, files in os.walk(path):
        if Path(dirpath) == path:  # a universal conversion has its own marker (checked when used),
            dirs[:] = [d for d in dirs if not (d.endswith("_universal") or d.startswith("."))]  # or is under way
        for name in files:
            problem = _format_problem(Path(dirpath) / name)
            if problem:
                return problem
    return None


def check(path: Path) -> str | None:
    """None when the checkpoint can be resumed from, else the reason in a few words: the
    marker's files and sizes, each file's structure, trainer_state.json, DeepSpeed's tag."""
    path = Path(path)
    try:
        step = step_of(path)
    except ValueError as exc:
        return str(exc)
    try:
        if not os.listdir(path):
            return "empty folder"
    except OSError as exc:
        return f"cannot be listed ({exc.strerror or exc})"
    return (
        _marker_problem(path) or _files_problem(path) or _trainer_state_problem(path, step) or _deepspeed_problem(path)
    )


def info(path: Path) -> CheckpointInfo:
    """Facts from the marker, or (no marker) from the files: the rank count from the optimizer
    shards, the stage from their names, the batch from trainer_state.json."""
    path = Path(path)
    step = step_of(path)
    try:
        marker = read_marker(path) or {}
    except ValueError:
        marker = {}
    tag = marker.get("tag")
    if tag is None and (path / "latest").is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            tag = (path / "latest").read_text(encoding="utf-8").strip() or None
    world, stage = marker.get("world_size"), marker.get("zero_stage")
    if (world is None or stage is None) and tag and (path / tag).is_dir():
        shards = list((path / tag).glob("*optim_states.pt"))
        world = world or (len(shards) or None)
        if stage is None and any((path / tag).glob("zero_pp_rank_*_model_states.pt")):
            stage = 3  # ZeRO-3 writes model states per rank; 1 and 2 look alike without the marker
    micro, accum = marker.get("micro_batch"), marker.get("grad_accum")
    if micro is None:
        with contextlib.suppress(ValueError):
            state = _read_json(path / "trainer_state.json")
            micro = state.get("train_batch_size") if isinstance(state, dict) else None
    return CheckpointInfo(
        path=path,
        step=step,
        world_size=world if isinstance(world, int) else None,
        zero_stage=stage if isinstance(stage, int) else None,
        tag=tag,
        micro_batch=micro if isinstance(micro, int) else None,
        grad_accum=accum if isinstance(accum, int) else None,
        marked=bool(marker),
    )


def resumable(workdir: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint of a run (None when there is none) and one note per
    checkpoint passed over (``skipping checkpoint-12: trainer_state.json is missing``).
    An interrupted save (``.staging``) is mentioned too; nothing is deleted here."""
    notes: list[str] = []
    staging = checkpoints_dir(workdir) / STAGING
    with contextlib.suppress(OSError):
        for p in sorted(staging.iterdir()) if staging.is_dir() else ():
            notes.append(f"{p.name} was being saved when the run stopped: never committed, ignored")
    for path in list_checkpoints(workdir):
        problem = check(path)
        if problem is None:
            with contextlib.suppress(ValueError):
                if read_marker(path) is None:
                    notes.append(
                        f"{path.name} has no {MARKER} (written before zerowizard committed checkpoints "
                        "atomically): its files were checked one by one"
                    )
            return path, notes
        notes.append(f"skipping {path.name}: {problem}")
    return None, notes


# -- writing (called on the ranks, still without torch) ------------------------------------------


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def file_sizes(folder: Path) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            f = Path(dirpath) / name
            if name != MARKER:
                out[f.relative_to(folder).as_posix()] = f.stat().st_size
    return dict(sorted(out.items()))


def write_marker(folder: Path, facts: dict) -> dict:
    """Flush every file, then write the marker (the last file) atomically; returns it."""
    folder = Path(folder)
    files = file_sizes(folder)
    for rel in files:
        _fsync(folder / rel)
    marker = {"format": FORMAT, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **facts, "files": files}
    tmp = folder / f".{MARKER}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(folder / MARKER)
    _fsync(folder)
    return marker


def commit(staging: Path, final: Path, facts: dict) -> None:
    """Marker into ``staging``, then ``staging`` renamed to ``final``. An older folder of the
    same name (a damaged one a resume skipped) is moved aside first and deleted after."""
    write_marker(staging, facts)
    aside = None
    if final.exists():
        aside = staging.parent / f"replaced-{final.name}-{os.getpid()}"
        final.replace(aside)
    staging.replace(final)
    _fsync(final.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def rotate(workdir: Path, keep: int) -> list[Path]:
    """Keep the newest ``keep`` intact checkpoints (0: keep all); delete older ones, intact or
    not. A folder newer than the newest intact one is never deleted, nor is the newest intact
    one, whatever ``keep`` says. Returns what was deleted."""
    if keep <= 0:
        return []
    ckpts = list_checkpoints(workdir)
    intact = [p for p in ckpts if check(p) is None]
    if not intact:
        return []
    kept = set(intact[: max(1, keep)])
    newest = step_of(intact[0])
    doomed = [p for p in ckpts if p not in kept and step_of(p) < newest]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def clear_staging(workdir: Path, name: str | None = None) -> None:
    """Remove leftovers of interrupted saves (all, or one ``checkpoint-N``)."""
    staging = checkpoints_dir(workdir) / STAGING
    if name is not None:
        shutil.rmtree(staging / name, ignore_errors=True)
    elif staging.is_dir():
        for p in staging.iterdir():
            shutil.rmtree(p, ignore_errors=True)
