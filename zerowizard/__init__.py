"""zerowizard: plan, check and run DeepSpeed ZeRO fine-tuning of LLMs."""

__version__ = "0.1.0"
