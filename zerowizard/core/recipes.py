"""Recipes as data: XTuner-style named plans in presets/recipes/<model>_<method>_<data>_eN.yaml.

Each file is an ordinary plan whose opening comment gives the command that runs it.
A recipe is a base: the flags given with ``--recipe NAME`` are applied on top of it, so
``--recipe NAME --deepspeed deepspeed_zero3`` means what it says.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .paths import PRESETS

if TYPE_CHECKING:
    from .plan import Plan

DEFAULT_RECIPE = "tiny_llama_full_alpaca_e3"


def recipes_dir() -> Path:
    return PRESETS / "recipes"


def list_recipes() -> list[dict]:
    """name, path and the command from each recipe's first comment line."""
    out = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        comments = [line[1:].strip() for line in lines if line.startswith("#")]
        out.append(
            {
                "name": path.stem,
                "path": str(path),
                "command": comments[0] if comments else "",
                "about": " ".join(comments[1:2]),
            }
        )
    return out


def recipe_path(name: str) -> Path:
    from .plan import PlanError
    from .text import did_you_mean

    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        names = [r["name"] for r in list_recipes()]
        fix = did_you_mean(name, names, "available: " + ", ".join(names))
        raise PlanError([f"--recipe: no recipe named {name!r}; {fix}"])
    return path


def load_recipe(name: str) -> Plan:
    """The recipe's Plan (PlanError naming the recipe on any problem)."""
    from zerowizard.core.plan import load_plan

    return load_plan(recipe_path(name))
