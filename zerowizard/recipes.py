"""Recipes as data: XTuner-style named plans in presets/recipes/<model>_<method>_<data>_eN.yaml.

Each file is an ordinary plan whose opening comment gives the command that runs it.
A recipe is a base: flags the user set on top of it (anything that differs from the plan
defaults) win, so ``--recipe NAME --deepspeed deepspeed_zero3`` means what it says.
"""
from __future__ import annotations

from pathlib import Path

from .paths import PRESETS

DEFAULT_RECIPE = "tiny_llama_full_alpaca_e3"


def recipes_dir() -> Path:
    return PRESETS / "recipes"


def list_recipes() -> list[dict]:
    """name, path and the command from each recipe's first comment line."""
    out = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        comments = [l[1:].strip() for l in lines if l.startswith("#")]
        out.append({"name": path.stem, "path": str(path),
                    "command": comments[0] if comments else "",
                    "about": " ".join(comments[1:2])})
    return out


def recipe_path(name: str) -> Path:
    from zerowizard.plan import PlanError, closest

    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        names = [r["name"] for r in list_recipes()]
        hint = closest(name, names)
        fix = f"did you mean '{hint}'?" if hint else "available: " + ", ".join(names)
        raise PlanError([f"--recipe: no recipe named {name!r}; {fix}"])
    return path


def load_recipe(name: str):
    """The recipe's Plan (PlanError naming the recipe on any problem)."""
    from zerowizard.plan import load_plan

    return load_plan(recipe_path(name))


def _leaves(d: dict, prefix=()):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def apply_recipe(plan, name: str):
    """The recipe as base, with every field of ``plan`` that differs from the defaults on top."""
    from zerowizard.plan import Plan, plan_from_dict, plan_to_dict

    base = plan_to_dict(load_recipe(name))
    default = dict(_leaves(plan_to_dict(Plan())))
    for path, value in _leaves(plan_to_dict(plan)):
        if default.get(path) != value:
            node = base
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    return plan_from_dict(base)


def is_bare_default(plan) -> bool:
    """No plan and no model named: the embedded default recipe applies."""
    from zerowizard.plan import Plan

    return plan.model == Plan().model
