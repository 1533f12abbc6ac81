"""SLURM host lists, expanded the way ``scontrol show hostnames`` does, without calling it.

The forms SLURM prints in ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST`` / ``SLURM_STEP_NODELIST``:

    node07                      one host
    node[01-03,7]               ranges and single numbers in one bracket; zero padding kept
    a[1-2],b3                   several expressions, commas outside brackets separate them
    gpu-[001-004]-ib            a bracket in the middle, a suffix after it
    rack[1-2]-n[1-2]            several brackets: every combination, leftmost slowest

and ``SLURM_TASKS_PER_NODE`` (``2(x3),1``: two tasks on each of three nodes, then one).

Padding follows SLURM's hostlist.c: a range is printed with the width of its first number
(``[09-11]`` -> 09 10 11; ``[9-11]`` -> 9 10 11). Pure Python, no subprocess.
"""

from __future__ import annotations

import itertools
import re

__all__ = ["NodelistError", "expand_nodelist", "expand_tasks_per_node", "first_host"]

# SLURM refuses host lists beyond this many names too (MAX_RANGE in hostlist.c is 64k).
MAX_HOSTS = 65536


class NodelistError(ValueError):
    """A host list SLURM would not print; the message quotes it."""


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            if depth:
                raise NodelistError(f"nested '[' in host list {text!r}")
            depth += 1
        elif ch == "]":
            if not depth:
                raise NodelistError(f"unbalanced ']' in host list {text!r}")
            depth -= 1
        if ch == sep and not depth:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise NodelistError(f"unclosed '[' in host list {text!r}")
    parts.append("".join(cur))
    return parts


def _expand_ranges(body: str, whole: str) -> list[str]:
    """``01-03,7`` -> ['01', '02', '03', '7']."""
    out: list[str] = []
    for item in body.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise NodelistError(f"bad range {item!r} in host list {whole!r}")
        lo_s, hi_s = m.group(1), m.group(2)
        if hi_s is None:
            out.append(lo_s)
            continue
        lo, hi = int(lo_s), int(hi_s)
        if hi < lo:
            raise NodelistError(f"range {item!r} runs backwards in host list {whole!r}")
        if hi - lo + 1 > MAX_HOSTS:
            raise NodelistError(f"range {item!r} is too large in host list {whole!r}")
        width = len(lo_s)
        out.extend(f"{n:0{width}d}" for n in range(lo, hi + 1))
    return out


def _expand_one(expr: str, whole: str) -> list[str]:
    """One comma-free (outside brackets) expression: literal pieces and bracket groups."""
    pieces: list[list[str]] = []
    for literal, bracket in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", expr):
        if literal:
            pieces.append([literal])
        if bracket:
            pieces.append(_expand_ranges(bracket, whole))
    return ["".join(combo) for combo in itertools.product(*pieces)] if pieces else []


def expand_nodelist(nodelist: str) -> list[str]:
    """Every host name, in SLURM's order. Raises :class:`NodelistError` on a malformed list."""
    text = (nodelist or "").strip()
    if not text:
        raise NodelistError("empty host list")
    if "[]" in text:
        raise NodelistError(f"empty brackets in host list {nodelist!r}")
    hosts: list[str] = []
    for expr in _split_top(text):
        expr = expr.strip()
        if not expr:
            continue  # SLURM tolerates a stray comma
        if re.search(r"\s", expr):
            raise NodelistError(f"space inside host name {expr!r} in host list {nodelist!r}")
        hosts.extend(_expand_one(expr, nodelist))
        if len(hosts) > MAX_HOSTS:
            raise NodelistError(f"host list {nodelist[:60]!r}... names more than {MAX_HOSTS} hosts")
    if not hosts:
        raise NodelistError(f"no host in host list {nodelist!r}")
    return hosts


def first_host(nodelist: str) -> str:
    """The first host, what ``scontrol show hostnames $SLURM_JOB_NODELIST | head -n1`` prints:
    the master address of a job."""
    return expand_nodelist(nodelist)[0]


def expand_tasks_per_node(spec: str) -> list[int]:
    """``SLURM_TASKS_PER_NODE``: ``2(x3),1`` -> [2, 2, 2, 1]."""
    out: list[int] = []
    for item in (spec or "").split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item)
        if not m:
            raise NodelistError(f"bad tasks-per-node entry {item!r} in {spec!r}")
        out.extend([int(m.group(1))] * int(m.group(2) or 1))
    return out
