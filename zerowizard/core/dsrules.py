"""Checks of a DeepSpeed JSON as written: what DeepSpeed itself would see.

DeepSpeed silently ignores a misspelt top-level key, rejects removed features only at start-up,
and reports a batch-size mismatch deep in a stack trace. These checks say it up front.
Sources: deepspeed/runtime/config.py (_REMOVED_TOP_LEVEL_CONFIG_KEYS, _REMOVED_ZERO_CONFIG_KEYS,
_configure_train_batch_size), deepspeed/runtime/zero/config.py (fields, deprecated aliases).
"""

from __future__ import annotations

from .problems import Problem
from .text import closest, did_you_mean, fmt_cc

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


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _enabled(section) -> bool:
    return isinstance(section, dict) and section.get("enabled") is True


def check_ds_config(
    cfg: dict,
    *,
    world_size: int | None = None,
    compute_capability: tuple[int, int] | None = None,
    is_cpu: bool = False,
    where: str = "",
) -> list[Problem]:
    """Every problem in a DeepSpeed config dict as written. Never raises."""
    out: list[Problem] = []
    p = where

    def add(sev, field, msg, fix):
        out.append(Problem(sev, f"{p}{field}", msg, fix))

    for key in cfg:
        if key in REMOVED_TOP_LEVEL:
            add("error", key, f"{REMOVED_TOP_LEVEL[key]}; DeepSpeed refuses to start with it", f"remove '{key}'")
        elif key not in KNOWN_TOP_LEVEL:
            if closest(key, KNOWN_TOP_LEVEL):
                add("error", key, "unknown key: DeepSpeed would silently ignore it", did_you_mean(key, KNOWN_TOP_LEVEL))
            else:
                add(
                    "warning",
                    key,
                    "unknown key: DeepSpeed would silently ignore it",
                    "remove it, or check the DeepSpeed config reference",
                )

    # Values of the batch fields.
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        if key in cfg and cfg[key] != "auto" and not _is_count(cfg[key]):
            add("error", key, f'must be a positive whole number or "auto", got {cfg[key]!r}', f"set {key} to 1 or more")
    clip = cfg.get("gradient_clipping")
    if (
        clip is not None
        and clip != "auto"
        and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0)
    ):
        add(
            "error",
            "gradient_clipping",
            f'must be a number >= 0 or "auto", got {clip!r}',
            "set gradient_clipping to e.g. 1.0",
        )
    tb, mb, ga = (
        cfg.get(k) for k in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    )
    if world_size and all(_is_count(x) for x in (tb, mb, ga)) and tb != mb * ga * world_size:
        add(
            "error",
            "train_batch_size",
            f"train_batch_size {tb} != micro batch {mb} x accumulation {ga} x {world_size} GPUs "
            f"= {mb * ga * world_size}",
            f"set train_batch_size to {mb * ga * world_size}, or remove it and let DeepSpeed derive it",
        )
    elif world_size and _is_count(tb) and _is_count(mb) and ga in (None,) and tb % (mb * world_size):
        add(
            "error",
            "train_batch_size",
            f"train_batch_size {tb} is not divisible by micro batch {mb} x {world_size} GPUs",
            "choose a multiple, or set gradient_accumulation_steps",
        )
    elif world_size and _is_count(tb) and "train_batch_size" in cfg:
        add(
            "info",
            "train_batch_size",
            f"pins the file to one GPU count ({world_size} now)",
            "remove it; DeepSpeed derives micro x accumulation x world size",
        )

    # Precision.
    fp16 = _enabled(cfg.get("fp16"))
    bf16 = _enabled(cfg.get("bf16")) or _enabled(cfg.get("bfloat16"))
    if fp16 and bf16:
        add("error", "fp16.enabled", "fp16 and bf16 are both enabled", "enable one of them")
    for name in ("fp16", "bf16", "bfloat16"):
        sec = cfg.get(name)
        if sec is not None and not isinstance(sec, dict):
            add(
                "error",
                name,
                f'must be an object like {{"enabled": true}}, got {sec!r}',
                f'write "{name}": {{"enabled": true}}',
            )
        elif isinstance(sec, dict) and "enabled" in sec and sec["enabled"] not in (True, False, "auto"):
            add(
                "error",
                f"{name}.enabled",
                f'must be true, false or "auto", got {sec["enabled"]!r}',
                "use true or false",
            )
    if bf16 and compute_capability is not None and compute_capability < (8, 0):
        cc = fmt_cc(compute_capability)
        add(
            "error",
            "bf16.enabled",
            f"bf16 needs compute capability 8.0 (Ampere) or newer; this GPU is {cc}",
            "enable fp16 instead",
        )
    if fp16 and is_cpu:
        add("error", "fp16.enabled", "DeepSpeed's CPU accelerator does not support fp16", "enable bf16 instead")

    # ZeRO.
    zo = cfg.get("zero_optimization")
    if zo is not None and not isinstance(zo, dict):
        add("error", "zero_optimization", f"must be an object, got {zo!r}", 'write {"stage": 2}')
        zo = None
    if isinstance(zo, dict):
        out.extend(_check_zero(zo, p))
        out.extend(_check_save(zo, p))
    for key, value in _walk(cfg):
        if value == "auto" and not key.startswith(("train_", "gradient_", "fp16", "bf16", "bfloat16")):
            add(
                "info",
                key,
                '"auto" is resolved by HF Trainer (and by zerowizard\'s export); DeepSpeed alone rejects it',
                "export with zerowizard to get concrete values",
            )
    return out


def _check_zero(zo: dict, p: str) -> list[Problem]:
    out: list[Problem] = []

    def add(sev, field, msg, fix):
        out.append(Problem(sev, f"{p}zero_optimization.{field}", msg, fix))

    stage = zo.get("stage", 0)
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 3:
        add("error", "stage", f"must be 0, 1, 2 or 3, got {stage!r}", "use 0, 1, 2 or 3")
        stage = 0
    for key in zo:
        if key in REMOVED_ZERO:
            add("error", key, f"{REMOVED_ZERO[key]}; DeepSpeed refuses to start with it", f"remove '{key}'")
        elif key in DEPRECATED_ZERO:
            add("warning", key, "deprecated", DEPRECATED_ZERO[key])
        elif key not in KNOWN_ZERO:
            add("error", key, "unknown ZeRO key; DeepSpeed refuses it", did_you_mean(key, KNOWN_ZERO, "remove it"))
    for key in (
        "reduce_bucket_size",
        "allgather_bucket_size",
        "stage3_prefetch_bucket_size",
        "stage3_max_live_parameters",
        "sub_group_size",
    ):
        v = zo.get(key)
        if v is not None and v != "auto" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            add("error", key, f"must be a positive number, got {v!r}", "use e.g. 5e8, or remove it")
    devices = {}
    for name in ("offload_optimizer", "offload_param"):
        sec = zo.get(name)
        if sec is None:
            continue
        if not isinstance(sec, dict):
            add(
                "error",
                name,
                f'must be an object like {{"device": "cpu"}}, got {sec!r}',
                f'write "{name}": {{"device": "cpu"}}',
            )
            continue
        dev = str(sec.get("device", "none")).lower()
        if dev not in OFFLOAD_DEVICES:
            add("error", f"{name}.device", f"{sec.get('device')!r} is not a device", "use none, cpu or nvme")
            continue
        devices[name] = dev
        if dev == "nvme" and not sec.get("nvme_path"):
            add(
                "error",
                f"{name}.nvme_path",
                "NVMe offload needs a path",
                f"set {name}.nvme_path to a local NVMe directory",
            )
    if devices.get("offload_param", "none") != "none" and stage < 3:
        add(
            "error",
            "offload_param",
            f"parameter offload works only with ZeRO-3; at stage {stage} DeepSpeed silently ignores it",
            "use stage 3, or remove offload_param",
        )
    if devices.get("offload_optimizer") == "nvme" and stage < 3:
        add(
            "error",
            "offload_optimizer.device",
            "NVMe optimizer offload (ZeRO-Infinity) needs ZeRO-3",
            "use stage 3, or offload to cpu",
        )
    opt = zo.get("offload_optimizer")
    if isinstance(opt, dict) and isinstance(opt.get("ratio"), (int, float)) and opt["ratio"] < 1 and stage < 3:
        add(
            "error",
            "offload_optimizer.ratio",
            f"partial offload (ratio {opt['ratio']}) works only with ZeRO-3",
            "use stage 3, or remove ratio",
        )
    return out


def _check_save(zo: dict, p: str) -> list[Problem]:
    stage = zo.get("stage", 0)
    return [zero3_save_problem(p)] if stage == 3 and not gathers_on_save(zo) else []


def _walk(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node
