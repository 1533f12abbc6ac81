"""The pure core: plan, hardware, model spec, memory, rules, DeepSpeed config, analysis.

Nothing in this package imports torch, deepspeed, transformers, peft or textual (a test checks it):
the wizard recomputes an analysis on every keystroke and must open in well under a second.
"""
