"""Hypothesis strategies: plans, flags, DeepSpeed JSONs and config.json files drawn from the
schema, then mutated (wrong types, NaN/Inf, out of range, unknown keys, deep nesting, alias
bombs, bytes that are not UTF-8)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from hypothesis import strategies as st

from zerowizard.core.hardware import CATALOG
from zerowizard.core.plan import METHODS, OFFLOAD_DEVICES, PRECISIONS, PRESET_NAMES, SECTIONS, Plan

from .harness import VALID_MODEL, Sandbox

# -- text a user (or an attacker) types ------------------------------------------------------------

NUMBER_VALUES = (
    [
        "0", "1", "-1", "2", "8", "64", "4.0", "1.5", "1e3", "1e-300", "1e999", "-1e999", "nan", "NaN", "inf",
        "-inf", "Infinity", "0x10", "1_000", " 4 ", "٣", "9" * 5000, "1" + "0" * 40, "7B", "350M", "1.5e9",
    ]
)  # fmt: skip
NUMBER_TEXT = st.sampled_from(NUMBER_VALUES)
HOSTILE_VALUES = (
    [
        "", " ", "--", "-", "-x", "\n", "a\nb", "x\r\ny", "$(touch pwned)", "`touch pwned`", "'\"", "a b",
        "[red]x[/]", "[/]", "[bold", "x" * 5000, "y" * 300, "é", "\u202e", "../../etc/passwd", "/dev/null",
        "/dev/zero", "fifo", "dir", "model", "ds.json", "plan.yaml", "%j", "#", "a,b", "~", ".", "..",
    ]
)  # fmt: skip
HOSTILE_TEXT = st.sampled_from(HOSTILE_VALUES)
ANY_TEXT = st.one_of(NUMBER_TEXT, HOSTILE_TEXT, st.text(max_size=40))

# -- numbers and values as parsed from YAML/JSON ----------------------------------------------------

SPECIAL_NUMBERS = st.sampled_from(
    [0, -1, 1, 2, 3, 4, 7, 10**6, 10**15, 10**30, 2**63, -(2**63), 0.5, 1.0, 1e300, -1e300, 5e8, 1e-9,
     math.nan, math.inf, -math.inf, True, False]
)  # fmt: skip
JUNK_VALUES = st.one_of(
    SPECIAL_NUMBERS,
    HOSTILE_TEXT,
    st.none(),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just("auto"),
    st.just("8"),
    st.just("5e8"),
)


def rarely(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (hypothesis would pick a small integer's 0 far more often)."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


def deep(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


# -- flags ------------------------------------------------------------------------------------------

VALID_FLAG_VALUES: dict[str, Any] = {
    "--model": st.sampled_from(["llama-3-8b", "qwen2.5-0.5b", "tiny-llama", "model", "meta-llama/Meta-Llama-3-8B"]),
    "--params": st.sampled_from(["7B", "350M", "1.5e9", "13B"]),
    "--method": st.sampled_from(METHODS),
    "--lora-r": st.sampled_from(["8", "64"]),
    "--gpus": st.sampled_from(["2", "8xA100-80GB", "1xV100-16GB", "4xH100-80GB", "cpu", "2xcpu", *CATALOG]),
    "--nodes": st.sampled_from(["1", "2"]),
    "--host-ram-gb": st.sampled_from(["64", "512", "0.5"]),
    "--deepspeed": st.sampled_from([*PRESET_NAMES, "ds.json"]),
    "--stage": st.sampled_from(["0", "1", "2", "3"]),
    "--offload-optimizer": st.sampled_from(OFFLOAD_DEVICES),
    "--offload-param": st.sampled_from(OFFLOAD_DEVICES),
    "--nvme-path": st.sampled_from(["/local_nvme", "nvme"]),
    "--micro-batch": st.sampled_from(["1", "4"]),
    "--grad-accum": st.sampled_from(["1", "8"]),
    "--seq-len": st.sampled_from(["512", "4096"]),
    "--precision": st.sampled_from(PRECISIONS),
    "--max-grad-norm": st.sampled_from(["1.0", "0"]),
    "--plan": st.sampled_from(["plan.yaml"]),
    "--recipe": st.sampled_from(["tiny_full_alpaca", "no_such_recipe"]),
}
SWITCHES = ("--grad-checkpointing", "--no-grad-checkpointing")


@st.composite
def plan_flags(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if rarely(draw, 10):
            argv.append(draw(st.sampled_from([*SWITCHES, "--", "-", "--unknown", "--model="])))
            continue
        flag = draw(st.sampled_from(sorted(VALID_FLAG_VALUES)))
        value = draw(st.one_of(VALID_FLAG_VALUES[flag], ANY_TEXT))
        if draw(st.booleans()):
            argv += [flag, value]
        else:
            argv.append(f"{flag}={value}")
    return argv


@st.composite
def command(draw: st.DrawFn) -> tuple[list[str], set[str]]:
    """A command line and the names it may legitimately write (on exit 0)."""
    kind = draw(st.sampled_from(["estimate", "estimate-json", "validate", "export"]))
    if kind == "estimate":
        return ["estimate"], set()
    if kind == "estimate-json":
        return ["estimate", "--json"], set()
    if kind == "validate":
        target = draw(
            st.sampled_from(["plan.yaml", "ds.json", "fifo", "dir", "nothing.json", "/dev/null", "link.json"])
        )
        return ["validate", target], set()
    argv: list[str] = []
    written: set[str] = set()
    for flag in draw(st.sets(st.sampled_from(["--export", "--save-plan", "--export-sbatch"]), min_size=1)):
        target = draw(st.one_of(st.sampled_from(Sandbox.TARGETS), HOSTILE_TEXT))
        argv += [flag, target]
        written.add(target)
        if flag == "--export-sbatch":
            stem = target[:-3] if target.endswith(".sh") else target
            written |= {f"{stem}.plan.yaml", f"{stem}.ds_config.json"}
            for opt in ("--partition", "--time", "--account"):
                if draw(st.booleans()):
                    argv += [opt, draw(st.one_of(st.sampled_from(["gpu", "24:00:00", "1-12", "proj_1"]), ANY_TEXT))]
    return argv, written


# -- plans ------------------------------------------------------------------------------------------


def _valid_for(f: dataclasses.Field) -> st.SearchStrategy:
    meta = f.metadata
    kind = meta.get("kind")
    if meta.get("choices"):
        return st.sampled_from(meta["choices"])
    if kind is bool:
        return st.booleans()
    if kind is int:
        lo = int(meta.get("minimum") or 0)
        return st.integers(lo, lo + 64)
    if kind is float:
        lo = float(meta.get("minimum") or 0.0)
        return st.floats(lo, lo + 2, allow_nan=False)
    if f.name == "name":
        return st.sampled_from(["llama-3-8b", "tiny-llama", "model", "qwen2.5-7b"])
    if f.name == "gpu":
        return st.sampled_from(["auto", "cpu", "A100-80GB", "V100-16GB"])
    if f.name == "deepspeed":
        return st.sampled_from([*PRESET_NAMES, "ds.json"])
    if f.name == "compute_capability":
        return st.sampled_from(["8.0", "7.5"])
    if f.name == "path":
        return st.sampled_from(["data.jsonl", "tatsu-lab/alpaca", "missing.jsonl", "dir", "fifo"])
    return st.just(f.default)


def _value_for(f: dataclasses.Field) -> st.SearchStrategy:
    valid = _valid_for(f)
    return st.one_of(valid, valid, valid, valid, valid, JUNK_VALUES)  # mostly valid: reach the deep code


@st.composite
def plan_dicts(draw: st.DrawFn) -> Any:
    data: dict[Any, Any] = {}
    for section, cls in SECTIONS.items():
        if not draw(st.booleans()):
            continue
        fields = dataclasses.fields(cls)
        chosen = draw(st.lists(st.sampled_from(fields), max_size=3, unique_by=lambda f: f.name))
        data[section] = {f.name: draw(_value_for(f)) for f in chosen}
        if rarely(draw, 10):
            data[section][draw(st.text(min_size=1, max_size=12))] = draw(JUNK_VALUES)  # an unknown key
    for f in dataclasses.fields(Plan):
        if f.name not in SECTIONS and draw(st.booleans()):
            data[f.name] = draw(_value_for(f))
    if rarely(draw, 20):
        return draw(JUNK_VALUES)  # a plan that is not a mapping
    if rarely(draw, 20):
        data["model"] = deep("x", draw(st.integers(30, 60)))
    return data


ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
)


@st.composite
def plan_texts(draw: st.DrawFn) -> bytes:
    """A plan file: the YAML of a drawn plan, or hostile YAML."""
    import yaml

    kind = draw(st.integers(0, 9))
    if kind <= 5:
        data = draw(plan_dicts())
        try:
            return yaml.safe_dump(data, allow_unicode=True).encode()
        except (yaml.YAMLError, ValueError):
            return b"model: tiny-llama\n"
    if kind == 6:
        where = draw(st.sampled_from(["model: {name: *a9}", "batch: {seq_len: *a9}", "zzz: *a9", "method: *a9"]))
        return (ALIAS_BOMB + "\n" + where + "\n").encode()
    if kind == 7:
        n = draw(st.integers(30, 3000))
        return ("model: " + "[" * n + "]" * n + "\n").encode()
    if kind == 8:
        return draw(
            st.sampled_from(
                [
                    b"seed: " + b"9" * 5000 + b"\n",
                    b"model: !!python/object/apply:os.system [echo pwned]\n",
                    b"model: !!binary aGVsbG8=\n",
                    b"train: {seed: 2001-12-14}\n",
                    b"batch: !!set {a, b}\n",
                    b"model: \xff\xfe\n",
                    b"\x00\x01\x02",
                    b"batch:\n\tseq_len: 4\n",
                    b"a: &x [1, *x]\n",
                    b"train: {epochs: .nan, learning_rate: .inf, warmup_ratio: -.inf}\n",
                    b"method: {lora_dropout: 1.0e+400}\n",
                    b"? [a, b]\n: c\n",
                    b"hardware: {host_ram_gb: 0x" + b"f" * 300 + b"}\n",
                ]
            )
        )
    return draw(st.binary(max_size=200))


# -- DeepSpeed JSON ---------------------------------------------------------------------------------

COUNT = st.one_of(st.integers(1, 10**9), st.just("auto"), JUNK_VALUES)
FLAG = st.one_of(st.booleans(), JUNK_VALUES)


def _offload() -> st.SearchStrategy:
    return st.one_of(
        st.fixed_dictionaries(
            {"device": st.one_of(st.sampled_from(["none", "cpu", "nvme", "CPU", "disk"]), JUNK_VALUES)},
            optional={
                "nvme_path": st.one_of(st.just("/nvme"), JUNK_VALUES),
                "ratio": st.one_of(st.floats(0, 1), JUNK_VALUES),
                "pin_memory": FLAG,
            },
        ),
        JUNK_VALUES,
    )


ZERO = st.fixed_dictionaries(
    {},
    optional={
        "stage": st.one_of(st.integers(0, 3), JUNK_VALUES),
        "offload_optimizer": _offload(),
        "offload_param": _offload(),
        "overlap_comm": FLAG,
        "contiguous_gradients": FLAG,
        "reduce_bucket_size": COUNT,
        "allgather_bucket_size": COUNT,
        "stage3_prefetch_bucket_size": COUNT,
        "stage3_param_persistence_threshold": COUNT,
        "stage3_max_live_parameters": COUNT,
        "sub_group_size": COUNT,
        "cpu_offload": FLAG,
        "round_robin_gradients": FLAG,
    },
)
PRECISION_SECTION = st.one_of(
    st.fixed_dictionaries({"enabled": st.one_of(st.booleans(), st.just("auto"), JUNK_VALUES)}), JUNK_VALUES
)
DS_CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "train_micro_batch_size_per_gpu": COUNT,
        "gradient_accumulation_steps": COUNT,
        "train_batch_size": COUNT,
        "gradient_clipping": st.one_of(st.floats(0, 10), st.just("auto"), JUNK_VALUES),
        "fp16": PRECISION_SECTION,
        "bf16": PRECISION_SECTION,
        "zero_optimization": st.one_of(ZERO, ZERO, JUNK_VALUES),
        "optimizer": st.fixed_dictionaries(
            {"type": st.sampled_from(["AdamW", "Adam"])},
            optional={
                "params": st.dictionaries(
                    st.sampled_from(["lr", "betas", "eps", "weight_decay"]), st.one_of(st.just("auto"), JUNK_VALUES)
                )
            },
        ),
        "zero_optimisation": st.just({"stage": 3}),
        "amp": st.just({"enabled": True}),
        "steps_per_print": COUNT,
    },
)


@st.composite
def ds_texts(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        cfg: Any = draw(DS_CONFIG)
        if rarely(draw, 10):
            cfg[draw(st.text(max_size=20))] = draw(JUNK_VALUES)
        if rarely(draw, 15):
            cfg = draw(JUNK_VALUES)  # not an object
        return json.dumps(cfg).encode()  # NaN and Infinity come out as the literals DeepSpeed's hjson takes
    if kind == 7:
        n = draw(st.integers(30, 5000))
        return ('{"zero_optimization": ' + "[" * n + "]" * n + "}").encode()
    if kind == 8:
        return draw(
            st.sampled_from(
                [
                    b'{"zero_optimization": {"stage": Infinity}}',
                    b'{"zero_optimization": {"reduce_bucket_size": NaN}}',
                    b'{"zero_optimization": {"stage": 1e400}}',
                    b'{"train_micro_batch_size_per_gpu": ' + b"9" * 5000 + b"}",
                    b'{"a": 1,,}',
                    b"\xff\xfe{}",
                    b'{"stage": 2',
                    b"",
                ]
            )
        )
    return draw(st.binary(max_size=200))


# -- model config.json ------------------------------------------------------------------------------


@st.composite
def model_configs(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        cfg: Any = dict(VALID_MODEL)
        for key in draw(st.lists(st.sampled_from([*sorted(cfg), "head_dim", "attention_bias"]), max_size=3)):
            if rarely(draw, 6):
                cfg.pop(key, None)
            else:
                cfg[key] = draw(st.one_of(SPECIAL_NUMBERS, JUNK_VALUES, st.integers(-5, 10**12)))
        return json.dumps(cfg).encode()
    if kind == 7:
        return draw(st.sampled_from([b"[1, 2]", b'"llama"', b"null", b"{" + b'"a":' * 3 + b"1}"]))
    if kind == 8:
        return json.dumps(VALID_MODEL).encode()[:-1] + b', "x": "\xff\xfe"}'
    return draw(st.binary(max_size=120))
