"""``python -m zerowizard.runner.reshard CHECKPOINT``: DeepSpeed's universal checkpoint, once.

Run by the launcher (resume.convert) before the ranks start, when a checkpoint written by N ranks
is resumed on M. Writes ``CHECKPOINT/TAG_universal`` through DeepSpeed's own converter
(``deepspeed.checkpoint.ds_to_universal``) into a temporary folder, adds its marker
(``zerowizard_universal.json``: files and sizes), renames it into place and writes
``latest_universal``, the tag the engine reads with ``checkpoint.load_universal``. A complete
conversion is reused. A failure prints one line ``zerowizard-reshard: <reason>`` and exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from zerowizard.core.dsconfig import write_json_atomic, write_text_atomic
from zerowizard.runner import checkpoints


def _complete(folder: Path) -> bool:
    """The conversion's own marker lists every file with its size."""
    try:
        files = checkpoints._read_json(folder / checkpoints.UNIVERSAL_MARKER).get("files", {})
    except (ValueError, AttributeError):
        return False
    return all((folder / rel).is_file() and (folder / rel).stat().st_size == size for rel, size in files.items())


def universal_ready(ckpt: Path, name: str) -> bool:
    try:
        tag = (ckpt / "latest_universal").read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return tag == name and _complete(ckpt / name)


def convert(ckpt: Path) -> Path:
    """The universal folder of ``ckpt`` (converted now unless a complete one exists)."""
    problem = checkpoints.check(ckpt)
    if problem:
        raise RuntimeError(f"{ckpt.name} is not intact: {problem}")
    info = checkpoints.info(ckpt)
    if not info.tag or not (ckpt / info.tag).is_dir():
        raise RuntimeError(f"{ckpt.name} has no DeepSpeed checkpoint (no `latest` tag)")
    name = f"{info.tag}_universal"
    final = ckpt / name
    if universal_ready(ckpt, name):
        return final
    tmp = ckpt / f".{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    from deepspeed.checkpoint import ds_to_universal

    args = argparse.Namespace(
        input_folder=str(ckpt / info.tag),
        output_folder=str(tmp),
        num_extract_workers=1,  # in process: the launcher waits on this one subprocess
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        # HF Trainer models carry no Megatron-style universal info; DeepSpeed's own flag adds the
        # minimal version key (no tensor or pipeline parallelism to merge)
        inject_missing_state=True,
    )
    try:
        ds_to_universal.main(args)
        if not any(tmp.glob("zero/*")):
            raise RuntimeError("DeepSpeed's converter wrote no parameter states")
        files = checkpoints.file_sizes(tmp)
        write_json_atomic(tmp / checkpoints.UNIVERSAL_MARKER, {"source": info.tag, "files": files})
        try:
            tmp.rename(final)
        except OSError:  # there already: another launcher of the job (SLURM tasks, nodes) was first
            if not _complete(final):  # or an earlier conversion that never finished
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text_atomic(ckpt / "latest_universal", name)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zerowizard.runner.reshard")
    ap.add_argument("checkpoint")
    args = ap.parse_args(argv)
    try:
        out = convert(Path(args.checkpoint))
    except Exception as exc:  # noqa: BLE001 - one line for the launcher, the traceback above it in the log
        import traceback

        traceback.print_exc()
        msg = str(exc).strip().splitlines()
        print(f"zerowizard-reshard: {type(exc).__name__}: {msg[0] if msg else ''}"[:400], flush=True)
        return 1
    print(f"zerowizard-reshard: done: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
