"""One call from a plan to everything the UI and the runner show: :func:`analyze`.

Resolves the hardware, the model, the precision and the DeepSpeed base, builds the final JSON,
runs the memory model for every variant, picks the recommendation and runs the rules.
Pure Python and fast (no torch, deepspeed or textual): the TUI calls it on every keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import calibration, dsconfig, eta, memory, optimizers, rules, speed
from .flops import activation_elements, flops_per_token, gathered_params
from .hardware import Detection, Hardware, resolve_hardware
from .modelcards import ModelNotFound, resolve_model
from .modelspec import ModelSpec
from .plan import MethodSection, Plan
from .prequant import weight_bytes
from .problems import Problem, errors, sort_problems
from .rates import rates_for
from .text import fmt_cc, fmt_gib

MEMORY_MARGIN = 0.05  # the recommendation prefers variants that leave this share of memory free
TIE = 0.10  # step times within 10% are a tie (the model is uncalibrated on most GPUs): the guide breaks it


def resolve_precision(requested: str, hw: Hardware) -> tuple[str, str]:
    """(precision, why). auto: bf16 on the CPU and where compute capability >= 8.0, else fp16."""
    if requested != "auto":
        return requested, "set in the plan"
    if hw.is_cpu:
        return "bf16", "the CPU accelerator supports bf16, not fp16"
    cc = hw.compute_capability
    if cc is None:
        return "bf16", "compute capability unknown; assuming Ampere or newer"
    label = fmt_cc(cc)
    if cc >= (8, 0):
        return "bf16", f"{hw.name} has compute capability {label} >= 8.0"
    return "fp16", f"{hw.name} has compute capability {label} < 8.0 (no bf16)"


@dataclass
class Analysis:
    plan: Plan
    hardware: Hardware
    model: ModelSpec | None
    precision: str
    precision_reason: str
    base: dict | None
    ds: dsconfig.DsBuild | None
    zero: dsconfig.ZeroSettings
    workload: memory.Workload | None = None
    estimates: tuple = ()
    selected: memory.VariantEstimate | None = None
    recommended: memory.VariantEstimate | None = None
    fix: memory.Change | None = None
    model_error: str = ""
    base_error: str = ""
    lora_fields_set: bool = False
    freeze_fields_set: bool = False
    problems: list[Problem] = field(default_factory=list)
    # the time model (zerowizard.core.speed): per variant, the fastest that fits, the guide's choice
    times: dict = field(default_factory=dict)  # Variant -> speed.StepTime
    fastest: memory.VariantEstimate | None = None
    lowest_fitting: memory.VariantEstimate | None = None
    total_steps: int | None = None  # optimizer steps of the run (max_steps, or the data's size)
    eta_s: float | None = None  # the plan's variant (the recommended one if the plan's does not fit)
    gpu_hours: float | None = None
    rates: speed.Rates | None = None

    @property
    def errors(self) -> list[Problem]:
        return errors(self.problems)

    @property
    def params_total(self) -> int:
        return self.model.total_params if self.model else 0

    @property
    def params_trainable(self) -> int:
        if not self.model:
            return 0
        m = self.plan.method
        return self.model.trainable_params(m.type, m.lora_r, m.target_modules, m.freeze_layers, m.trainable_modules)

    @property
    def optimizer(self) -> optimizers.Optimizer | None:
        """The optimizer the run uses: the plan's, else the base JSON's section, else AdamW."""
        name = self.plan.optimizer
        if name is None:
            name, _ = optimizers.from_ds_config(self.base or {})
        return optimizers.lookup(name)[0]

    @property
    def recommendation_reason(self) -> str:
        rec, low = self.recommended, self.lowest_fitting
        if rec is not None:
            mem = f"{fmt_gib(rec.per_gpu.total)} of {fmt_gib(self.hardware.memory_bytes)}"
            t = self.times.get(rec.variant)
            if not _fits_with_margin(rec, self.hardware):
                mem += f", under {MEMORY_MARGIN:.0%} to spare"
            if t is None:
                return f"{rec.variant.label} fits ({mem})"
            fast = self.fastest
            tf = self.times.get(fast.variant) if fast is not None else None
            if (
                fast is not None
                and tf is not None
                and fast.variant != rec.variant
                and (low is None or low.variant == rec.variant)
            ):
                return (
                    f"{rec.variant.label} fits ({mem}) and is within {TIE:.0%} of the fastest, "
                    f"{fast.variant.label} ({speed.fmt_seconds(t.step_s)} vs {speed.fmt_seconds(tf.step_s)} per step: "
                    "a tie for the time model); among equals the guide's order decides "
                    "(ZeRO-1, 2, 3, then ZeRO-0, then offload)"
                )
            if low is None or low.variant == rec.variant:
                return (
                    f"{rec.variant.label} fits ({mem}) and is the fastest that fits "
                    f"({speed.fmt_seconds(t.step_s)} per step); the ZeRO stages train the same model"
                )
            tl = self.times.get(low.variant)
            ratio = tl.step_s / t.step_s if tl and t.step_s > 0 else 1.0
            if ratio >= 1 + TIE:
                return (
                    f"{rec.variant.label} is the fastest that fits ({speed.fmt_seconds(t.step_s)} per step, {mem}); "
                    f"{low.variant.label}, the guide's lowest stage that fits, fits too but is {ratio:.1f}x slower"
                )
            return (
                f"{rec.variant.label} fits with room to spare ({mem}) and is as fast; "
                f"{low.variant.label}, the guide's lowest stage that fits, leaves under "
                f"{MEMORY_MARGIN:.0%} of memory free"
            )
        if self.fix is not None:
            return f"nothing fits as planned; {self.fix.description} would fit"
        return "nothing fits on this hardware"


def workload_for(
    plan: Plan,
    spec: ModelSpec,
    hw: Hardware,
    precision: str,
    zs: dsconfig.ZeroSettings,
    optimizer: optimizers.Optimizer | None = None,
) -> memory.Workload:
    m = plan.method
    tr = spec.trainable(m.type, m.lora_r, m.target_modules, m.freeze_layers, m.trainable_modules)
    trainable = tr.params
    opt = optimizer or optimizers.DEFAULT
    prequant = None
    if spec.quantization is not None and m.type == "lora":
        prequant = weight_bytes(spec.quantization, spec.quantizable_params, spec.quantized_rows)
    # On the CPU accelerator a rank's memory is its resident set: DeepSpeed allocates each
    # reduction bucket whole (torch.empty), but only the pages gradients are written to become
    # resident, at most the trainable count (the tiny default's ranks: 0.6 GiB, not 2.4).
    bucket = min(zs.reduce_bucket_size, trainable) if hw.is_cpu else zs.reduce_bucket_size
    return memory.Workload(
        total_params=spec.total_params,
        trainable_params=trainable,
        method=m.type,
        quantizable_params=spec.quantizable_params,
        largest_layer_params=spec.largest_layer_params,
        largest_linear_params=spec.largest_linear_params,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        kv_dim=spec.num_kv_heads * spec.head_dim,
        q_dim=spec.num_heads * spec.head_dim,
        vocab_size=spec.vocab_size,
        micro_batch=plan.batch.micro_batch,
        seq_len=plan.batch.seq_len,
        grad_accum=plan.batch.grad_accum,
        grad_checkpointing=plan.batch.grad_checkpointing,
        precision=precision,
        lora_dropout=m.lora_dropout,
        world_size=hw.world_size,
        gpus_per_node=hw.gpus_per_node,
        gpu_memory_bytes=hw.memory_bytes,
        host_ram_bytes=hw.host_ram_bytes,
        is_cpu=hw.is_cpu,
        reduce_bucket_size=bucket,
        overlap_comm=zs.overlap_comm,
        contiguous_gradients=zs.contiguous_gradients,
        prefetch_bucket_size=zs.prefetch_bucket_size,
        max_live_parameters=zs.max_live_parameters,
        optimizer_states=optimizers.state_bytes(opt, trainable),
        num_experts=spec.num_experts,
        experts_per_token=spec.experts_per_token,
        expert_width=spec.moe_intermediate_size,
        shared_width=spec.shared_expert_intermediate_size,
        moe_layers=sum(c for c, s in spec.layer_groups() if s.is_moe),
        layer_tensors=tr.layer_tensors,
        embedding_trainable=tr.embedding,
        head_trainable=tr.head,
        backprop_layers=tr.backprop_layers,
        lora_inputs=tr.lora_inputs,
        quantized_linears=spec.quantized_linears,
        prequantized_bytes=prequant,
    )


def analyze(plan: Plan, *, detection: Detection | None = None) -> Analysis:
    """Everything about a plan. Never raises for bad input: problems carry it."""
    hw = resolve_hardware(plan.hardware, detection)
    precision, why = resolve_precision(plan.precision, hw)
    spec, model_error = None, ""
    try:
        spec = resolve_model(plan.model.name, plan.model.params)
    except ModelNotFound as exc:
        model_error = str(exc)
    base, base_error = None, ""
    try:
        base = dsconfig.load_base(plan.deepspeed)
    except dsconfig.DsConfigError as exc:
        base_error = str(exc)
    hidden = spec.hidden_size if spec else None
    zs = dsconfig.zero_settings(plan, base or {}, hidden)
    ds = None
    if base is not None:
        ds = dsconfig.build(plan, precision=precision, world_size=hw.world_size, hidden_size=hidden, base=base)
    defaults = MethodSection()
    lora_set = any(
        getattr(plan.method, k) != getattr(defaults, k)
        for k in ("lora_r", "lora_alpha", "lora_dropout", "target_modules")
    )
    freeze_set = any(getattr(plan.method, k) != getattr(defaults, k) for k in ("freeze_layers", "trainable_modules"))
    a = Analysis(
        plan=plan,
        hardware=hw,
        model=spec,
        precision=precision,
        precision_reason=why,
        base=base,
        ds=ds,
        zero=zs,
        model_error=model_error,
        base_error=base_error,
        lora_fields_set=lora_set,
        freeze_fields_set=freeze_set,
    )
    if spec is not None and hw.memory_bytes > 0:
        w = workload_for(plan, spec, hw, precision, zs, a.optimizer)
        a.workload = w
        a.estimates = memory.estimate_all(w, prequantized=spec.quantization is not None)
        chosen = memory.Variant(zs.stage if 0 <= zs.stage <= 3 else 0, zs.offload_optimizer, zs.offload_param)
        a.selected = next((e for e in a.estimates if e.variant == chosen), None) or memory.estimate_variant(w, chosen)
        allow_nvme = bool(zs.nvme_path)
        a.lowest_fitting = memory.lowest_fitting(a.estimates, allow_nvme)
        _add_times(a, plan, spec, hw, precision, zs)
        a.fastest = fastest_fitting(a.estimates, a.times, allow_nvme)
        a.recommended = recommend(a.estimates, a.times, hw, allow_nvme) or a.lowest_fitting
        if a.recommended is None:
            a.fix = memory.cheapest_fix(w, allow_nvme)
        _add_eta(a, plan)
    a.problems = sort_problems(rules.check(a))
    return a


def job_for(
    plan: Plan,
    spec: ModelSpec,
    hw: Hardware,
    precision: str,
    zs: dsconfig.ZeroSettings,
    ds: dict,
    optimizer: optimizers.Optimizer | None = None,
) -> speed.Job:
    """The variant-independent facts of the plan the time model reads."""
    m, b = plan.method, plan.batch
    opt = optimizer or optimizers.DEFAULT
    gathered, gathered_modules = gathered_params(spec, zs.param_persistence_threshold)
    tr = spec.trainable(m.type, m.lora_r, m.target_modules, m.freeze_layers, m.trainable_modules)
    # parameter tensors with a gradient (DeepSpeed hooks each one)
    tensors = sum(c for _, c in tr.layer_tensors) + (1 if tr.embedding else 0) + (1 if tr.head else 0)
    # submodules: per layer the linears, the norms, attention, MLP, activation and the layer itself;
    # the model, its body, embedding, final norm, rotary embedding and LM head; peft adds six per adapter
    modules = spec.num_layers * (len(spec.linear_layers()) + spec.norms_per_layer + 4) + 6
    if m.type in ("lora", "qlora"):
        modules += 6 * spec.num_layers * len(spec.target_linears(m.target_modules))
    # without packing a micro batch is padded to its longest example, not to seq_len (core/eta.py)
    padded, real = eta.batch_tokens(plan) or (b.micro_batch * b.seq_len, b.micro_batch * b.seq_len)
    return speed.Job(
        flops=flops_per_token(
            spec,
            m.type,
            seq_len=max(1, round(padded / b.micro_batch)),
            grad_checkpointing=b.grad_checkpointing,
            lora_r=m.lora_r,
            target_modules=m.target_modules,
            freeze_layers=m.freeze_layers,
            trainable_modules=m.trainable_modules,
        ),
        tokens_per_micro=max(1, round(padded)),
        real_tokens_per_micro=real,
        grad_accum=b.grad_accum,
        num_layers=spec.num_layers,
        total_params=spec.total_params,
        trainable_params=tr.params,
        trainable_tensors=tensors,
        quantized_params=spec.quantizable_params if m.type == "qlora" else 0,
        gathered_params=gathered,
        gathered_modules=gathered_modules,
        modules=modules,
        precision=precision,
        world_size=hw.world_size,
        gpus_per_node=hw.gpus_per_node,
        nodes=hw.nodes,
        grad_checkpointing=b.grad_checkpointing,
        reduce_bucket_size=zs.reduce_bucket_size,
        overlap_comm=zs.overlap_comm,
        prefetch_bucket_size=zs.prefetch_bucket_size,
        elements=activation_elements(spec, b.grad_checkpointing),
        optimizer_bytes=20 + 2 * opt.state_bytes,
    )


def _add_times(
    a: Analysis, plan: Plan, spec: ModelSpec, hw: Hardware, precision: str, zs: dsconfig.ZeroSettings
) -> None:
    job = job_for(plan, spec, hw, precision, zs, a.ds.config if a.ds else {}, a.optimizer)
    cal = calibration.load(calibration.device_key(hw))
    a.rates = rates_for(hw, precision, cal)
    variants = [e.variant for e in a.estimates]
    if a.selected is not None and a.selected.variant not in variants:
        variants.append(a.selected.variant)
    for v in variants:
        k, runs = cal.correction(v, hw.world_size) if cal is not None else (1.0, 0)
        source = f"calibrated from {runs} run{'s' if runs != 1 else ''} on this machine" if runs else ""
        a.times[v] = speed.step_time(job, v, a.rates, k, source)


def _fits_with_margin(e: memory.VariantEstimate, hw: Hardware) -> bool:
    if hw.is_cpu:
        return hw.host_ram_bytes is None or e.per_node_host <= (1 - MEMORY_MARGIN) * hw.host_ram_bytes
    return hw.memory_bytes <= 0 or e.per_gpu.total <= (1 - MEMORY_MARGIN) * hw.memory_bytes


def _fitting(
    estimates: tuple[memory.VariantEstimate, ...], times: dict, allow_nvme: bool
) -> list[memory.VariantEstimate]:
    return [
        e for e in estimates if e.fits and e.variant in times and (allow_nvme or e.variant.offload_optimizer != "nvme")
    ]


def fastest_fitting(
    estimates: tuple[memory.VariantEstimate, ...], times: dict, allow_nvme: bool
) -> memory.VariantEstimate | None:
    """The variant that fits with the least predicted step time (ties: the guide's order)."""
    ok = _fitting(estimates, times, allow_nvme)
    order = list(memory.ALL_VARIANTS)
    return min(ok, key=lambda e: (times[e.variant].step_s, order.index(e.variant)), default=None)


def recommend(
    estimates: tuple[memory.VariantEstimate, ...], times: dict, hw: Hardware, allow_nvme: bool
) -> memory.VariantEstimate | None:
    """The recommendation: among the variants that fit, those within TIE of the fastest (the model is
    uncalibrated on most GPUs), a margin of memory preferred, the guide's order (the lowest stage that
    fits first) breaking what is left."""
    ok = _fitting(estimates, times, allow_nvme)
    if not ok:
        return None
    best = min(times[e.variant].step_s for e in ok)
    # a variant with memory to spare is preferred when it is about as fast as the best
    roomy = [e for e in ok if _fits_with_margin(e, hw)]
    pool = roomy if roomy and min(times[e.variant].step_s for e in roomy) <= best * (1 + TIE) else ok
    best = min(times[e.variant].step_s for e in pool)
    near = [e for e in pool if times[e.variant].step_s <= best * (1 + TIE)]
    order = list(memory.PREFERENCE) + [v for v in memory.ALL_VARIANTS if v not in memory.PREFERENCE]
    return min(near, key=lambda e: order.index(e.variant) if e.variant in order else len(order))


def _add_eta(a: Analysis, plan: Plan) -> None:
    a.total_steps = eta.total_steps(plan, a.hardware.world_size)
    chosen = a.selected if a.selected is not None and a.selected.fits else a.recommended
    t = a.times.get(chosen.variant) if chosen is not None else None
    if a.total_steps and t is not None:
        a.eta_s = a.total_steps * t.step_s
        a.gpu_hours = a.eta_s * a.hardware.world_size / 3600


def _variant_json(v: memory.Variant) -> dict:
    return {"stage": v.stage, "offload_optimizer": v.offload_optimizer, "offload_param": v.offload_param}


def estimate_json(a: Analysis) -> dict:
    """The exact shape `zerowizard estimate --json` prints (bytes as integers)."""
    hw = a.hardware
    rec = a.recommended.variant if a.recommended else None
    return {
        "world_size": hw.world_size,
        "gpus_per_node": hw.gpus_per_node,
        "nodes": hw.nodes,
        "gpu": {
            "name": hw.name,
            "memory_bytes": hw.memory_bytes,
            "compute_capability": fmt_cc(hw.compute_capability) if hw.compute_capability else None,
        },
        "params": {"total": a.params_total, "trainable": a.params_trainable},
        "variants": [
            {
                "stage": e.variant.stage,
                "offload_optimizer": e.variant.offload_optimizer,
                "offload_param": e.variant.offload_param,
                "per_gpu": e.per_gpu.as_dict(),
                "per_node_host": e.per_node_host,
                "fits": e.fits,
                "time": a.times[e.variant].as_dict() if e.variant in a.times else None,
                "eta_s": _eta(a, e.variant),
            }
            for e in a.estimates
        ],
        "recommended": {
            "stage": rec.stage,
            "offload_optimizer": rec.offload_optimizer,
            "offload_param": rec.offload_param,
        }
        if rec
        else None,
        "fastest": _variant_json(a.fastest.variant) if a.fastest else None,
        "lowest_fitting": _variant_json(a.lowest_fitting.variant) if a.lowest_fitting else None,
        "recommendation_reason": a.recommendation_reason,
        "total_steps": a.total_steps,
        "eta_s": None if a.eta_s is None else round(a.eta_s, 3),
        "gpu_hours": None if a.gpu_hours is None else round(a.gpu_hours, 4),
        "problems": [p.as_dict() for p in a.problems],
    }


def _eta(a: Analysis, v: memory.Variant) -> float | None:
    t = a.times.get(v)
    return round(a.total_steps * t.step_s, 3) if a.total_steps and t is not None else None
