"""One call from a plan to everything the UI and the runner show: :func:`analyze`.

Resolves the hardware, the model, the precision and the DeepSpeed base, builds the final JSON,
runs the memory model for every variant, picks the recommendation and runs the rules.
Pure Python and fast (no torch, deepspeed or textual): the TUI calls it on every keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import dsconfig, memory, optimizers, rules
from .hardware import Hardware, resolve_hardware
from .modelspec import ModelNotFound, ModelSpec, resolve_model
from .plan import MethodSection, Plan
from .prequant import weight_bytes
from .problems import Problem, errors, sort_problems
from .text import fmt_cc, fmt_gib


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
        if self.recommended is not None:
            return (
                f"{self.recommended.variant.label} is the lowest stage that fits "
                f"({fmt_gib(self.recommended.per_gpu.total)} of "
                f"{fmt_gib(self.hardware.memory_bytes)}); the ZeRO stages train the same "
                "model, so prefer the lowest that does not run out of memory"
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


def analyze(plan: Plan, *, detection=None) -> Analysis:
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
        a.recommended = memory.lowest_fitting(a.estimates, allow_nvme)
        if a.recommended is None:
            a.fix = memory.cheapest_fix(w, allow_nvme)
    a.problems = sort_problems(rules.check(a))
    return a


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
            "compute_capability": fmt_cc(hw.compute_capability, None),
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
        "problems": [p.as_dict() for p in a.problems],
    }
