"""Checks of a DeepSpeed JSON as written: what DeepSpeed itself would see.

DeepSpeed silently ignores a misspelt top-level key, rejects removed features only at start-up,
and reports a batch-size mismatch deep in a stack trace. These checks say it up front.
Sources: deepspeed/runtime/config.py (_REMOVED_TOP_LEVEL_CONFIG_KEYS, _REMOVED_ZERO_CONFIG_KEYS,
_configure_train_batch_size), deepspeed/runtime/zero/config.py (fields, deprecated aliases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .problems import Problem
from .text import closest, did_you_mean, excerpt
from .validation import InputError, number_problem, parse_number, text_problem
from .zerocombos import precision_clashes, zero_clashes

KNOWN_TOP_LEVEL = frozenset(
    """
train_batch_size train_micro_batch_size_per_gpu gradient_accumulation_steps optimizer scheduler
fp16 bf16 bfloat16 torch_autocast gradient_clipping prescale_gradients gradient_predivide_factor
gradient_allreduce_op communication_data_type seq_parallel_communication_data_type zero_optimization
zero_allow_untested_optimizer zero_force_ds_cpu_optimizer steps_per_print wall_clock_breakdown
dump_state memory_breakdown flops_profiler activation_checkpointing tensorboard wandb csv_monitor
comet comms_logger autotuning aio checkpoint data_types data_efficiency weight_quantization pipeline
hybrid_engine compile dataloader_drop_last disable_allgather tensor_parallel use_node_local_storage
load_universal_checkpoint timers sequence_parallel_size disable_python_gc managed_gradient_accumulation
log_level legacy_fusion vocabulary_size zenflow expert_parallel
""".split()
)

REMOVED_TOP_LEVEL = {
    "nebula": "Nebula checkpointing was removed from DeepSpeed",
    "compression_training": "the DeepSpeed compression library was removed",
    "amp": "NVIDIA Apex AMP integration was removed; use fp16, bf16 or torch_autocast",
    "quantize_training": "Mixture-of-Quantization (quantize_training) was removed",
    "sparse_gradients": "sparse embedding-gradient compression was removed",
    "eigenvalue": "eigenvalue-based MoQ was removed",
    "sparse_attention": "DeepSpeed Sparse Attention was removed",
    "elasticity": "elastic training was removed; set the batch sizes directly",
    "graph_harvesting": "graph harvesting was removed",
    "curriculum_learning": "top-level curriculum_learning was removed; use "
    "data_efficiency.data_sampling.curriculum_learning",
    "progressive_layer_drop": "Progressive Layer Dropping was removed",
}
REMOVED_ZERO = {
    "mics_shard_size": "MiCS sharding was removed",
    "mics_hierarchical_params_gather": "MiCS sharding was removed",
    "zeropp_loco_param": "LoCo-ZeRO++ was removed",
}
DEPRECATED_ZERO = {
    "cpu_offload": 'use "offload_optimizer": {"device": "cpu"}',
    "cpu_offload_param": 'use "offload_param": {"device": "cpu"}',
    "cpu_offload_use_pin_memory": 'use "pin_memory" inside offload_optimizer / offload_param',
    "stage3_gather_fp16_weights_on_model_save": 'use "stage3_gather_16bit_weights_on_model_save"',
    "elastic_checkpoint": "it has no effect any more; use Universal Checkpointing",
}
KNOWN_ZERO = frozenset(
    """
stage allgather_partitions allgather_bucket_size overlap_comm reduce_scatter reduce_bucket_size
contiguous_gradients offload_param offload_optimizer sub_group_size cpu_offload_param
cpu_offload_use_pin_memory cpu_offload prefetch_bucket_size stage3_prefetch_bucket_size
param_persistence_threshold stage3_param_persistence_threshold model_persistence_threshold
stage3_model_persistence_threshold max_live_parameters stage3_max_live_parameters max_reuse_distance
stage3_max_reuse_distance gather_16bit_weights_on_model_save stage3_gather_16bit_weights_on_model_save
stage3_gather_fp16_weights_on_model_save ignore_unused_parameters legacy_stage1 round_robin_gradients
zero_hpz_partition_size zero_quantized_weights zero_quantized_nontrainable_weights
zero_quantized_gradients memory_efficient_linear pipeline_loading_checkpoint override_module_apply
elastic_checkpoint load_from_fp32_weights leaf_module module_granularity_threshold
stage3_module_granularity_threshold use_all_reduce_for_fetch_params stage3_use_all_reduce_for_fetch_params
allgather_sequential stage3_allgather_sequential compute_grad_norm enable_sanity_checks
log_trace_cache_warnings parameter_alignment use_multi_rank_bucket_allreduce zenflow
save_muon_momentum_buffer_in_memory
""".split()
) | frozenset(REMOVED_ZERO)
OFFLOAD_DEVICES = ("none", "cpu", "nvme")

# The fields HF Trainer compares with its own arguments when they are not "auto" (and fills when
# they are): transformers/integrations/deepspeed.py, HfTrainerDeepSpeedConfig.trainer_config_process
# and trainer_config_finalize. Value: what it fills "auto" from.
HF_FILLED = {
    "train_micro_batch_size_per_gpu": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "train_batch_size": "world size x per_device_train_batch_size x gradient_accumulation_steps",
    "gradient_clipping": "max_grad_norm",
    "optimizer.params.lr": "learning_rate",
    "optimizer.params.betas": "adam_beta1 and adam_beta2",
    "optimizer.params.eps": "adam_epsilon",
    "optimizer.params.weight_decay": "weight_decay",
    "scheduler.params.warmup_min_lr": "0",
    "scheduler.params.warmup_max_lr": "learning_rate",
    "scheduler.params.total_num_steps": "the number of training steps",
    "scheduler.params.warmup_num_steps": "warmup_steps (or warmup_ratio)",
    "fp16.enabled": "fp16",
    "bf16.enabled": "bf16",
    "zero_optimization.reduce_bucket_size": "the model's hidden_size squared",
    "zero_optimization.stage3_prefetch_bucket_size": "0.9 x hidden_size squared",
    "zero_optimization.stage3_param_persistence_threshold": "10 x hidden_size",
}
HF_ZERO3_ONLY = (
    "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
)
BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
MAX_BATCH = 1 << 30
MAX_ELEMENTS = 1e13  # bucket sizes and parameter counts, in elements: 20 TB of fp16 is no real setting
ZERO_COUNTS = (
    "reduce_bucket_size",
    "allgather_bucket_size",
    "stage3_prefetch_bucket_size",
    "prefetch_bucket_size",
    "stage3_max_live_parameters",
    "max_live_parameters",
    "sub_group_size",
)
ZERO_THRESHOLDS = (
    "stage3_param_persistence_threshold",
    "param_persistence_threshold",
    "stage3_max_reuse_distance",
    "max_reuse_distance",
)
ZERO_FLAGS = ("overlap_comm", "contiguous_gradients", "cpu_offload", "allgather_partitions", "reduce_scatter")

Add = Callable[[str, str, str, str], None]


GATHER_ON_SAVE_KEYS = (
    "stage3_gather_16bit_weights_on_model_save",
    "gather_16bit_weights_on_model_save",
    "stage3_gather_fp16_weights_on_model_save",
)


def gathers_on_save(zo: dict) -> bool:
    """Whether ZeRO-3 consolidates the 16-bit weights when a model is saved (DeepSpeed default: no)."""
    return any(zo.get(k) is True for k in GATHER_ON_SAVE_KEYS)


def zero3_save_problem(where: str = "") -> Problem:
    return Problem(
        "warning",
        f"{where}zero_optimization.stage3_gather_16bit_weights_on_model_save",
        "is false under ZeRO-3 (DeepSpeed's default): the Trainer's save_model then writes no weights, "
        "only DeepSpeed's shards, so a model saved from a checkpoint would be empty",
        "set it to true; zerowizard's runner gathers the 16-bit weights into final/ anyway (one "
        "consolidation on rank 0's host) and `zerowizard export-model RUN` consolidates any checkpoint",
    )


def _check_save(zo: dict, p: str) -> list[Problem]:
    stage = zo.get("stage", 0)
    return [zero3_save_problem(p)] if stage == 3 and not gathers_on_save(zo) else []


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _enabled(section: Any) -> bool:
    return isinstance(section, dict) and section.get("enabled") is True


def _numeric_text(value: Any) -> bool:
    """A number written as text ("8", "5e8"): what JSON from a template or a shell often holds."""
    if not isinstance(value, str):
        return False
    try:
        parse_number(value)
    except InputError:
        return False
    return True


def _adder(out: list[Problem], prefix: str) -> Add:
    def add(sev: str, field: str, msg: str, fix: str) -> None:
        out.append(Problem(sev, f"{prefix}{field}", msg, fix))

    return add


def check_ds_config(
    cfg: dict,
    *,
    world_size: int | None = None,
    compute_capability: tuple[int, int] | None = None,
    is_cpu: bool = False,
    where: str = "",
    combinations: bool = True,
) -> list[Problem]:
    """Every problem in a DeepSpeed config dict as written. Never raises.

    ``combinations=False`` leaves out the offload/stage and precision combinations
    (:mod:`.zerocombos`): the plan rules judge those on the plan merged with this base."""
    out: list[Problem] = []
    add = _adder(out, where)
    _check_top_keys(cfg, add)
    _check_batch(cfg, world_size, add)
    _check_precision(cfg, add, compute_capability if combinations else None, is_cpu and combinations)
    if not combinations:
        out[:] = [p for p in out if "both enabled" not in p.message]
    zo = cfg.get("zero_optimization")
    if zo is not None and not isinstance(zo, dict):
        add("error", "zero_optimization", f"must be an object, got {excerpt(zo)}", 'write {"stage": 2}')
    elif isinstance(zo, dict):
        out.extend(_check_zero(zo, where, combinations))
        out.extend(_check_save(zo, where))
    _check_autos(cfg, add)
    return out


def _check_top_keys(cfg: dict, add: Add) -> None:
    for key in cfg:
        shown = excerpt(key, 60, quote=False)
        if key in REMOVED_TOP_LEVEL:
            add("error", shown, f"{REMOVED_TOP_LEVEL[key]}; DeepSpeed refuses to start with it", f"remove '{shown}'")
        elif key not in KNOWN_TOP_LEVEL:
            if closest(key, KNOWN_TOP_LEVEL):
                add(
                    "error",
                    shown,
                    "unknown key: DeepSpeed would silently ignore it",
                    did_you_mean(key, KNOWN_TOP_LEVEL),
                )
            else:
                add(
                    "warning",
                    shown,
                    "unknown key: DeepSpeed would silently ignore it",
                    "remove it, or check the DeepSpeed config reference",
                )


def _hf_text_number(key: str, value: Any, add: Add) -> bool:
    """A number written as text in a field HF Trainer compares: say what happens. True if so."""
    if not _numeric_text(value):
        return False
    add(
        "error",
        key,
        f"{excerpt(value)} is text, not a number: HF Trainer compares it with its own {HF_FILLED[key]} "
        f'and, text never being equal to a number, refuses to start ("mismatch")',
        f'write {value.strip()} without quotes, or "auto" to let HF Trainer fill it',
    )
    return True


def _check_batch(cfg: dict, world_size: int | None, add: Add) -> None:
    for key in BATCH_KEYS:
        if key not in cfg or cfg[key] == "auto" or _hf_text_number(key, cfg[key], add):
            continue
        problem = number_problem(cfg[key], integer=True, minimum=1, maximum=MAX_BATCH)
        if problem or isinstance(cfg[key], float):
            problem = problem or f"expected a whole number, got {cfg[key]!r}"
            add("error", key, f'must be a positive whole number or "auto": {problem}', f"set {key} to 1 or more")
    clip = cfg.get("gradient_clipping")
    if clip is not None and clip != "auto" and not _hf_text_number("gradient_clipping", clip, add):
        problem = number_problem(clip, minimum=0, maximum=1e6)
        if problem:
            add(
                "error",
                "gradient_clipping",
                f'must be a number >= 0 or "auto": {problem}',
                "set gradient_clipping to e.g. 1.0",
            )
    _check_batch_arithmetic(cfg, world_size, add)


def _check_batch_arithmetic(cfg: dict, world_size: int | None, add: Add) -> None:
    tb: Any = cfg.get("train_batch_size")
    mb: Any = cfg.get("train_micro_batch_size_per_gpu")
    ga: Any = cfg.get("gradient_accumulation_steps")
    if not world_size or not _is_count(tb):
        return
    if _is_count(mb) and _is_count(ga):
        if tb != mb * ga * world_size:
            add(
                "error",
                "train_batch_size",
                f"train_batch_size {tb} != micro batch {mb} x accumulation {ga} x {world_size} GPUs "
                f"= {mb * ga * world_size}",
                f"set train_batch_size to {mb * ga * world_size}, or remove it and let DeepSpeed derive it",
            )
            return
    elif _is_count(mb) and ga is None and tb % (mb * world_size):
        add(
            "error",
            "train_batch_size",
            f"train_batch_size {tb} is not divisible by micro batch {mb} x {world_size} GPUs",
            "choose a multiple, or set gradient_accumulation_steps",
        )
        return
    add(
        "info",
        "train_batch_size",
        f"pins the file to one GPU count ({world_size} now)",
        "remove it; DeepSpeed derives micro x accumulation x world size",
    )


def _check_precision(cfg: dict, add: Add, compute_capability: tuple[int, int] | None, is_cpu: bool) -> None:
    for name in ("fp16", "bf16", "bfloat16"):
        sec = cfg.get(name)
        if sec is not None and not isinstance(sec, dict):
            add(
                "error",
                name,
                f'must be an object like {{"enabled": true}}, got {excerpt(sec)}',
                f'write "{name}": {{"enabled": true}}',
            )
        elif isinstance(sec, dict) and "enabled" in sec and sec["enabled"] not in (True, False, "auto"):
            add(
                "error",
                f"{name}.enabled",
                f'must be true, false or "auto", got {excerpt(sec["enabled"])}',
                "use true or false",
            )
    fp16 = _enabled(cfg.get("fp16"))
    bf16 = _enabled(cfg.get("bf16")) or _enabled(cfg.get("bfloat16"))
    for c in precision_clashes(bf16=bf16, fp16=fp16, compute_capability=compute_capability, is_cpu=is_cpu):
        add("error", c.key, c.message, c.json_fix)


def _check_zero(zo: dict, p: str, combinations: bool = True) -> list[Problem]:
    out: list[Problem] = []
    add = _adder(out, f"{p}zero_optimization.")
    stage = zo.get("stage", 0)
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 3:
        add("error", "stage", f"must be 0, 1, 2 or 3, got {excerpt(stage)}", "use 0, 1, 2 or 3")
        stage = 0
    _check_zero_keys(zo, add)
    _check_zero_values(zo, add)
    devices = _offload_devices(zo, add)
    if combinations:
        opt = zo.get("offload_optimizer")
        ratio = opt.get("ratio") if isinstance(opt, dict) else None
        clashes = zero_clashes(
            stage,
            devices.get("offload_optimizer", "none"),
            devices.get("offload_param", "none"),
            nvme_paths={
                name: zo[name].get("nvme_path") if isinstance(zo.get(name), dict) else None
                for name in ("offload_optimizer", "offload_param")
            },
            ratio=ratio if number_problem(ratio, minimum=0, maximum=1) is None else None,
        )
        for c in clashes:
            add("error", c.key, c.message, c.json_fix)
    return out


def _check_zero_keys(zo: dict, add: Add) -> None:
    for key in zo:
        shown = excerpt(key, 60, quote=False)
        if key in REMOVED_ZERO:
            add("error", shown, f"{REMOVED_ZERO[key]}; DeepSpeed refuses to start with it", f"remove '{shown}'")
        elif key in DEPRECATED_ZERO:
            add("warning", shown, "deprecated", DEPRECATED_ZERO[key])
        elif key not in KNOWN_ZERO:
            add("error", shown, "unknown ZeRO key; DeepSpeed refuses it", did_you_mean(key, KNOWN_ZERO, "remove it"))


def _check_zero_values(zo: dict, add: Add) -> None:
    """Types and ranges of the ZeRO fields zerowizard reads (and DeepSpeed validates)."""
    for key in ZERO_COUNTS + ZERO_THRESHOLDS:
        v = zo.get(key)
        if v is None or v == "auto":
            continue
        minimum = 1 if key in ZERO_COUNTS else 0
        problem = number_problem(v, integer=True, minimum=minimum, maximum=MAX_ELEMENTS)
        if problem:
            what = "a positive number" if minimum else "a number >= 0"
            add("error", key, f"must be {what} of elements: {problem}", "use e.g. 5e8, or remove it")
    for key in ZERO_FLAGS:
        if key in zo and not isinstance(zo[key], bool):
            add("error", key, f"must be true or false, got {excerpt(zo[key])}", "use true or false")


def _offload_devices(zo: dict, add: Add) -> dict[str, str]:
    devices = {}
    for name in ("offload_optimizer", "offload_param"):
        sec = zo.get(name)
        if sec is None:
            continue
        if not isinstance(sec, dict):
            add(
                "error",
                name,
                f'must be an object like {{"device": "cpu"}}, got {excerpt(sec)}',
                f'write "{name}": {{"device": "cpu"}}',
            )
            continue
        raw = sec.get("device", "none")
        dev = raw.lower() if isinstance(raw, str) else raw
        if dev not in OFFLOAD_DEVICES:
            add("error", f"{name}.device", f"{excerpt(raw)} is not a device", "use none, cpu or nvme")
            continue
        devices[name] = dev
        path = sec.get("nvme_path")
        if path is not None and text_problem(path) is not None:
            add("error", f"{name}.nvme_path", f"must be a folder name: {text_problem(path)}", "write the folder")
        if name == "offload_optimizer" and "ratio" in sec:
            problem = number_problem(sec["ratio"], minimum=0, maximum=1)
            if problem:
                add("error", f"{name}.ratio", f"must be a number from 0 to 1: {problem}", "use e.g. 0.3, or remove it")
    return devices


def _check_autos(cfg: dict, add: Add) -> None:
    """Say what HF Trainer does with each "auto" (zerowizard's export fills the same ones)."""
    zo = cfg.get("zero_optimization")
    stage = zo.get("stage") if isinstance(zo, dict) else None
    for key, value in _walk(cfg):
        if value != "auto":
            continue
        shown = excerpt(key, 80, quote=False)
        source = HF_FILLED.get(key)
        if source is not None and (key not in HF_ZERO3_ONLY or stage == 3):
            add(
                "info",
                shown,
                f'"auto": HF Trainer fills it from {source} (zerowizard --export from the plan); '
                "DeepSpeed alone refuses the text",
                "",
            )
        elif source is not None:
            add(
                "warning",
                shown,
                f'"auto": HF Trainer fills it only under ZeRO-3; at stage {excerpt(stage)} '
                'DeepSpeed gets the text "auto"',
                "write a number, or remove it",
            )
        else:
            add(
                "warning",
                shown,
                'HF Trainer does not fill "auto" here: DeepSpeed gets the text "auto"',
                "write a value, or remove it",
            )


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node
