"""The core and the headless commands never import torch, deepspeed or textual."""

import json
import subprocess
import sys

HEAVY = ("torch", "deepspeed", "textual", "transformers", "peft")

SCRIPT = rf"""
import json, sys, os, tempfile
os.chdir(tempfile.mkdtemp())
from zerowizard import cli, commands, planflags
import pkgutil, importlib, zerowizard.core
for m in pkgutil.iter_modules(zerowizard.core.__path__):
    importlib.import_module('zerowizard.core.' + m.name)
from zerowizard.cli import main
codes = []
for argv in (["estimate"], ["estimate", "--json", "--model", "llama-3-8b", "--gpus", "8xA100-80GB"],
             ["--export", "ds.json", "--model", "llama-3-8b", "--gpus", "8xA100-80GB", "--method", "lora"]):
    codes.append(main(argv))
open("ds2.json", "w").write('{{"zero_optimization": {{"stage": 2}}}}')
codes.append(main(["validate", "ds2.json"]))
try:
    main(["--help"])
except SystemExit:
    pass
print(json.dumps({{"codes": codes, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def test_core_and_headless_commands_stay_light():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    last = json.loads(r.stderr.strip().splitlines()[-1])
    assert last["codes"] == [0, 0, 0, 0], r.stderr
    assert last["heavy"] == []
