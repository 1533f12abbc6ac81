"""The runner: launch ranks (torchrun / SLURM / single), train per rank, stream events.

Nothing here imports torch, transformers or deepspeed at module level; the per-rank entry
(:mod:`zerowizard.runner.train`) imports them inside its functions.
"""
