"""One example (or a few) per class of bad input in the issue, each through the real CLI.

In process (``run_cli``) where that is enough; in a subprocess where the class is about the
process itself: a hang on a FIFO or a terminal, a full disk, the crash guard.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import TRACEBACK, VALID_MODEL, assert_answered, run_cli
from .strategies import ALIAS_BOMB

ROOT = Path(__file__).resolve().parents[2]
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


@pytest.fixture
def crash(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ZEROWIZARD_CACHE", str(folder))
    return folder / "crash"


def cli(argv, cwd, crash):
    r = run_cli([str(a) for a in argv], cwd)
    assert_answered(r, crash, argv)
    return r


def flat(r):
    """stdout and stderr with rich's line wrapping undone (whitespace runs as one space)."""
    return " ".join((r.out + "\n" + r.err).split())


def error_lines(r):
    return [line for line in r.err.splitlines() if line.startswith("zerowizard: error:")]


# -- NaN, Infinity, huge numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["estimate", "--host-ram-gb", "nan"], "--host-ram-gb: expected a finite number"),
        (["estimate", "--params", "inf"], "--params: not a parameter count"),
        (["estimate", "--params", "1e30"], "--params: '1e30' is above the maximum"),
        (["estimate", "--seq-len", "1e999"], "--seq-len: expected a finite number"),
        (["estimate", "--micro-batch", "99999999999999999999"], "--micro-batch (batch.micro_batch)"),
        (["estimate", "--lora-r", "9" * 5000], "--lora-r: expected a number, got 5,000 characters"),
    ],
)
def test_nan_inf_and_huge_flags(tmp_path, crash, argv, needle):
    r = cli(argv, tmp_path, crash)
    assert r.code == 2 and any(needle in line for line in error_lines(r)), r.err


def test_max_grad_norm_nan_writes_nothing(tmp_path, crash):
    (tmp_path / "ds.json").write_text("precious")
    r = cli(["--export", "ds.json", "--max-grad-norm", "nan"], tmp_path, crash)
    assert r.code == 2 and "--max-grad-norm" in r.err
    assert (tmp_path / "ds.json").read_text() == "precious"


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"zero_optimization": {"stage": Infinity}}', "Infinity is not a number JSON allows"),
        ('{"zero_optimization": {"reduce_bucket_size": NaN}}', "NaN is not a number JSON allows"),
        ('{"zero_optimization": {"stage": 1e400}}', "1e400 is too large for a number"),
        ('{"train_micro_batch_size_per_gpu": ' + "9" * 5000 + "}", "more than 4,300 digits"),
    ],
)
@pytest.mark.parametrize("how", ["validate", "export"])
def test_deepspeed_json_non_finite(tmp_path, crash, text, needle, how):
    (tmp_path / "d.json").write_text(text)
    argv = ["validate", "d.json"] if how == "validate" else ["--export", "out.json", "--deepspeed", "d.json"]
    r = cli(argv, tmp_path, crash)
    assert r.code == 2 and needle in flat(r), r.text()
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("field", ["train.epochs", "train.learning_rate", "train.warmup_ratio", "method.lora_dropout"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_plan_fields_refuse_nan_and_inf(tmp_path, crash, field, value):
    section, key = field.split(".")
    (tmp_path / "p.yaml").write_text(f"{section}: {{{key}: {value}}}\n")
    r = cli(["validate", "p.yaml"], tmp_path, crash)
    assert r.code == 2 and f"{field}: expected a finite number" in flat(r), r.text()


@pytest.mark.parametrize(
    "yaml_text, needle",
    [
        ("batch: {seq_len: 99999999}\n", "batch.seq_len: 99999999 is above the maximum"),
        ("batch: {micro_batch: 1000000}\n", "batch.micro_batch"),
        ("method: {lora_r: 100000}\n", "method.lora_r"),
        ("hardware: {gpus_per_node: 5000}\n", "hardware.gpus_per_node"),
        ("hardware: {nodes: 1000000}\n", "hardware.nodes"),
        ("hardware: {host_ram_gb: 1.0e+300}\n", "hardware.host_ram_gb"),
        ("train: {seed: 99999999999}\n", "train.seed"),
    ],
)
def test_plan_fields_have_maxima(tmp_path, crash, yaml_text, needle):
    (tmp_path / "p.yaml").write_text(yaml_text)
    r = cli(["estimate", "--plan", "p.yaml"], tmp_path, crash)
    assert r.code == 2 and needle in flat(r), r.text()


# -- hostile YAML and JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["validate", "bomb.yaml"], ["estimate", "--plan", "bomb.yaml"]])
def test_alias_bomb_is_refused_quickly_and_briefly(tmp_path, crash, argv):
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB + "\nmodel: {name: *a9}\n")
    start = time.monotonic()
    r = cli(argv, tmp_path, crash)
    assert time.monotonic() - start < 10
    assert r.code == 2 and "aliases (*name) expand it to more than 100,000 values" in flat(r)
    assert max(len(line) for line in (r.err + r.out).splitlines()) < 300


@pytest.mark.parametrize(
    "name, text",
    [
        ("deep.yaml", "model: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("deep.json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"),
    ],
)
def test_deep_nesting(tmp_path, crash, name, text):
    (tmp_path / name).write_text(text)
    r = cli(["validate", name], tmp_path, crash)
    assert r.code == 2 and "nested" in flat(r), r.text()


def test_a_long_value_is_quoted_short(tmp_path, crash):
    (tmp_path / "p.yaml").write_text("model: {name: [" + ", ".join(["x" * 50] * 2000) + "]}\n")
    r = cli(["validate", "p.yaml"], tmp_path, crash)
    assert r.code == 2 and "model.name: expected text" in flat(r)
    assert len(r.out) < 500


# -- a model directory ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, needle",
    [
        (b"[1, 2]", "a model config is a JSON object"),
        (json.dumps({**VALID_MODEL, "hidden_size": "4096"}).encode(), "hidden_size: expected a whole number"),
        (
            json.dumps({**VALID_MODEL, "num_attention_heads": 0}).encode(),
            "num_attention_heads: 0 is below the minimum 1",
        ),
        (b'{"hidden_size": NaN}', "NaN is not a number JSON allows"),
        (json.dumps(VALID_MODEL).encode()[:-1] + b', "x": "\xff"}', "is not UTF-8 text"),
        (json.dumps({**VALID_MODEL, "num_hidden_layers": -2}).encode(), "num_hidden_layers: -2 is below the minimum 1"),
        (json.dumps({**VALID_MODEL, "vocab_size": 0}).encode(), "vocab_size: 0 is below the minimum 1"),
        (json.dumps({**VALID_MODEL, "hidden_size": 256.5}).encode(), "hidden_size: expected a whole number"),
        (json.dumps({**VALID_MODEL, "hidden_size": 256.0}).encode(), "without a decimal point"),
        (json.dumps({**VALID_MODEL, "num_hidden_layers": True}).encode(), "num_hidden_layers: expected a whole number"),
        (json.dumps({**VALID_MODEL, "vocab_size": 10**12}).encode(), "vocab_size: 1000000000000 is above the maximum"),
        (json.dumps({**VALID_MODEL, "num_key_value_heads": 3}).encode(), "does not divide num_attention_heads"),
        (
            json.dumps({**VALID_MODEL, "tie_word_embeddings": "no"}).encode(),
            "tie_word_embeddings: expected true or false",
        ),
    ],
)
def test_model_config_json(tmp_path, crash, config, needle):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_bytes(config)
    r = cli(["estimate", "--model", "m"], tmp_path, crash)
    assert r.code == 2 and needle in flat(r), r.text()


def test_model_config_json_that_is_fine(tmp_path, crash):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(VALID_MODEL))
    r = cli(["estimate", "--model", "m", "--gpus", "1xA100-80GB"], tmp_path, crash)
    assert r.code == 0, r.text()


# -- export targets -------------------------------------------------------------------------------


def test_symlink_is_written_through(tmp_path, crash):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "ds.json").write_text("old")
    os.symlink("configs/ds.json", tmp_path / "ds.json")
    r = cli(["--export", "ds.json", "--gpus", "2xA100-80GB"], tmp_path, crash)
    assert r.code == 0, r.text()
    assert os.path.islink(tmp_path / "ds.json")
    assert json.loads((tmp_path / "configs" / "ds.json").read_text())["zero_optimization"]["stage"] == 2


def test_dangling_symlink_creates_its_target(tmp_path, crash):
    os.symlink("made.yaml", tmp_path / "p.yaml")
    r = cli(["--save-plan", "p.yaml"], tmp_path, crash)
    assert r.code == 0 and os.path.islink(tmp_path / "p.yaml") and (tmp_path / "made.yaml").is_file()


@pytest.mark.parametrize("flag", ["--export", "--save-plan", "--export-sbatch"])
@pytest.mark.parametrize("target, needle", [("/dev/null", "is a device"), ("sub", "is a directory"), ("", "empty")])
def test_devices_directories_and_empty_names_are_refused(tmp_path, crash, flag, target, needle):
    (tmp_path / "sub").mkdir()
    r = cli([flag, target], tmp_path, crash)
    assert r.code == 2 and needle in flat(r), r.text()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_fifo_is_refused_without_waiting(tmp_path, zw):
    os.mkfifo(tmp_path / "pipe.json")
    r = zw("--export", "pipe.json")
    assert r.returncode == 2 and "is a fifo, not a regular file" in r.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.json").st_mode)
    r = zw("validate", "pipe.json")
    assert r.returncode == 2 and "fifo" in r.stderr


@pytest.mark.parametrize("flag", ["--export", "--save-plan", "--export-sbatch"])
def test_empty_target_never_opens_the_wizard(tmp_path, flag):
    r = subprocess.run(
        [sys.executable, "-m", "zerowizard", flag, ""],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and f"{flag}: the file name is empty" in r.stderr, r.stderr


def test_bare_zerowizard_from_a_script_does_not_wait(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "zerowizard"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and "needs a terminal" in r.stderr, r.stderr


def _file_size_limit(limit: int):
    def setup() -> None:  # the kernel refuses to grow a file past `limit` bytes (EFBIG), like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return setup


def test_a_disk_that_fills_part_way_leaves_nothing(tmp_path):
    """ds.json (~360 bytes) fits under the limit, job.plan.yaml (~700) does not: the export fails
    after writing one file, and none of the five appears; the old ds.json is left as it was."""
    (tmp_path / "ds.json").write_text("precious")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "zerowizard",
            "--export",
            "ds.json",
            "--export-sbatch",
            "job.sh",
            "--gpus",
            "2xA100-80GB",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=_file_size_limit(500),
    )
    assert r.returncode == 1 and "nothing was written" in r.stderr, r.stderr
    assert TRACEBACK not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.json"]
    assert (tmp_path / "ds.json").read_text() == "precious"


def test_the_same_file_twice_is_refused(tmp_path, crash):
    r = cli(["--export", "x.yaml", "--save-plan", "x.yaml"], tmp_path, crash)
    assert r.code == 2 and "are the same file" in flat(r) and not (tmp_path / "x.yaml").exists()


# -- sbatch ---------------------------------------------------------------------------------------


def test_newline_in_partition_adds_no_line(tmp_path, crash):
    r = cli(["--export-sbatch", "job.sh", "--partition", "gpu\nrm -rf ~"], tmp_path, crash)
    assert r.code == 2 and "--partition: 'gpu\\nrm -rf ~' is not a partition name" in flat(r)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["forever", "24h", "1:2:3:4", "25:61:00", "1-24", "-5", "1-12:60"])
def test_time_must_be_a_slurm_time(tmp_path, crash, value):
    r = cli(["--export-sbatch", "job.sh", "--time", value], tmp_path, crash)
    assert r.code == 2 and "--time" in flat(r) and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "value", ["30", "30:00", "24:00:00", "100:00:00", "1-12", "1-12:30", "2-00:00:00", "UNLIMITED", "infinite"]
)
def test_every_slurm_time_format_is_accepted(tmp_path, crash, value):
    r = cli(["--export-sbatch", "job.sh", "--time", value], tmp_path, crash)
    assert r.code == 0 and f"#SBATCH --time={value}\n" in (tmp_path / "job.sh").read_text()


def test_hostile_paths_run_as_typed(tmp_path, crash):
    """A folder named with $(...), backticks, quotes, a space and %: the script, run by bash with
    a stand-in srun that records its arguments, hands srun exactly the plan and output paths, and
    nothing typed is executed; the #SBATCH paths read back (as sbatch splits them) as typed."""
    folder = tmp_path / '$(touch pwned) `touch pwned2` it\'s "q" 100%'
    folder.mkdir()
    r = cli(["--export-sbatch", folder / "job.sh"], tmp_path, crash)
    assert r.code == 0, r.text()
    script = folder / "job.sh"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(
        '#!/bin/bash\npython3 -c \'import json,sys; print(json.dumps(sys.argv[1:]))\' "$@" > "$SRUN_ARGS"\n'
    )
    (bindir / "srun").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "SRUN_ARGS": str(tmp_path / "args.json"), "SLURM_JOB_ID": "77"}
    res = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    args = json.loads((tmp_path / "args.json").read_text())
    assert args[args.index("--plan") + 1] == str(folder / "job.plan.yaml")
    assert args[args.index("--output") + 1] == f"{folder}/work_dirs/job_77"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    (line,) = [x for x in script.read_text().splitlines() if x.startswith("#SBATCH --output=")]
    assert shlex.split(line[len("#SBATCH --output=") :]) == [str(folder).replace("%", "%%") + "/job-%j.out"]


# -- exit codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["estimate", "--deepspeed", "deepspeed_zero4"],
        [
            "estimate",
            "--model",
            "llama-3-8b",
            "--method",
            "qlora",
            "--deepspeed",
            "deepspeed_zero3",
            "--gpus",
            "8xA100-80GB",
        ],
        ["estimate", "--plan", "unknown_gpu.yaml"],
    ],
)
def test_estimate_exits_2_on_plan_errors_and_still_prints(tmp_path, crash, argv):
    (tmp_path / "unknown_gpu.yaml").write_text("hardware: {gpu: Z100-80GB}\n")
    r = cli(argv, tmp_path, crash)
    assert r.code == 2 and "error" in flat(r) and "world size" in flat(r), r.text()


def test_estimate_exits_0_without_errors(tmp_path, crash):
    r = cli(["estimate", "--model", "llama-3-8b", "--method", "lora", "--gpus", "8xA100-80GB"], tmp_path, crash)
    assert r.code == 0 and "recommended" in r.out


def test_estimate_help_says_so(tmp_path, crash):
    r = cli(["estimate", "--help"], tmp_path, crash)
    assert r.code == 0 and "exit 2 when it has any" in " ".join(r.out.split())


def test_micro_batch_dashdash(tmp_path, crash):
    r = cli(["estimate", "--micro-batch=--"], tmp_path, crash)
    assert r.code == 2 and "--micro-batch: expected a value" in r.err


@pytest.mark.parametrize("name", ["y" * 300, "x/" + "z" * 300, "w" * 5000])
def test_very_long_model_name(tmp_path, crash, name):
    r = cli(["estimate", "--model", name], tmp_path, crash)
    assert r.code == 2 and "File name too long" not in r.err + r.out
    assert max(len(line) for line in (r.err + r.out).splitlines()) < 400


# -- DeepSpeed's own verdict ----------------------------------------------------------------------


def test_text_numbers_and_autos_say_what_hf_trainer_does(tmp_path, crash):
    (tmp_path / "d.json").write_text(
        json.dumps(
            {"train_micro_batch_size_per_gpu": "8", "gradient_clipping": "auto", "zero_optimization": {"stage": 2}}
        )
    )
    r = cli(["validate", "d.json"], tmp_path, crash)
    out = " ".join(r.out.split())
    assert r.code == 2
    assert "'8' is text, not a number: HF Trainer compares it with its own per_device_train_batch_size" in out
    assert '"auto": HF Trainer fills it from max_grad_norm' in out


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_deepspeed_refuses_what_the_static_checks_pass(tmp_path, crash):
    (tmp_path / "d.json").write_text(
        json.dumps({"zero_optimization": {"stage": 2, "round_robin_gradients": "maybe"}, "legacy_fusion": False})
    )
    r = cli(["validate", "d.json", "--deepspeed-check", "--json", "--model", "qwen2.5-0.5b"], tmp_path, crash)
    report = json.loads(r.out)
    assert r.code == 2
    version = report["deepspeed_check"]["version"]
    messages = [p["message"] for p in report["problems"]]
    assert any(f"DeepSpeed {version} refuses the file as HF Trainer passes it" in m for m in messages), messages
    assert any(f"DeepSpeed {version} does not read this key" in m for m in messages), messages


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_deepspeed_check_checks_the_config_it_shows(tmp_path, crash):
    cfg = {"zero_optimisation": {"stage": 3}, "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}}
    (tmp_path / "d.json").write_text(json.dumps(cfg))
    r = cli(["validate", "d.json", "--deepspeed-check", "--json", "--model", "qwen2.5-0.5b"], tmp_path, crash)
    report = json.loads(r.out)
    shown = {o["key"]: o["new"] for o in report["overrides"]}
    assert shown["zero_optimization.reduce_bucket_size"] == 896 * 896  # Qwen2.5-0.5B: hidden 896
    assert report["exported"]["zero_optimization"]["reduce_bucket_size"] == 896 * 896
    assert report["deepspeed_check"]["ran"] and report["deepspeed_check"]["errors"]["export"] == []
    unknown = [p for p in report["problems"] if p["field"] == "zero_optimisation"]
    assert len(unknown) == 1 and unknown[0]["fix"] == "did you mean 'zero_optimization'?"


# -- the guard ------------------------------------------------------------------------------------


def test_a_bug_is_one_line_and_a_log_file(tmp_path):
    code = (
        "import sys, zerowizard.cli as c\n"
        "def boom(args): raise RuntimeError('boom ' + 'x' * 1000)\n"
        "c._dispatch = boom\n"
        "sys.exit(c.main(['estimate']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZEROWIZARD_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1 and TRACEBACK not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("zerowizard: internal error: RuntimeError: boom") and len(line) < 600
    (log,) = (tmp_path / "cache" / "crash").glob("crash-*.log")
    assert str(log) in line and TRACEBACK in log.read_text() and "RuntimeError: boom" in log.read_text()


# -- data files and environment variables ---------------------------------------------------------


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: os.mkfifo(p), "is a fifo"),
        (lambda p: p.write_bytes(b'{"instruction": "\xff"}\n'), "not a UTF-8"),
        (lambda p: p.write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}\n"), "nested too deeply"),
        (lambda p: p.write_text('{"a": ' + "9" * 5000 + "}\n"), "4,300 digits"),
        (lambda p: p.write_text("[" + '{"a": ' + "9" * 5000 + "}]"), "4,300 digits"),
    ],
)
def test_data_files(tmp_path, make, needle):
    from zerowizard.runner import data

    path = tmp_path / "d.jsonl"
    make(path)
    with pytest.raises(data.DataError, match=needle):
        data.load_records(path)


def test_a_data_path_that_is_a_folder_is_a_plan_error(tmp_path, crash):
    (tmp_path / "d.jsonl").mkdir()
    (tmp_path / "p.yaml").write_text("data: {path: d.jsonl}\n")
    r = cli(["validate", "p.yaml"], tmp_path, crash)
    assert r.code == 2 and "data.path" in flat(r) and "is a directory" in flat(r)


def test_environment_numbers(monkeypatch):
    from zerowizard.core.validation import InputError, env_number

    monkeypatch.setenv("ZW_TEST_N", "eight")
    with pytest.raises(InputError, match="ZW_TEST_N: expected a whole number, got 'eight'; fix or unset"):
        env_number("ZW_TEST_N", 1, integer=True)
    monkeypatch.setenv("ZW_TEST_N", "nan")
    with pytest.raises(InputError, match="finite"):
        env_number("ZW_TEST_N", 1)
    monkeypatch.setenv("ZW_TEST_N", " ")
    assert env_number("ZW_TEST_N", 3, integer=True) == 3
    monkeypatch.setenv("ZW_TEST_N", "4")
    assert env_number("ZW_TEST_N", 3, integer=True, minimum=1, maximum=8) == 4


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_deepspeed_check_of_a_plan_parses_its_export(tmp_path, crash):
    (tmp_path / "p.yaml").write_text("model: qwen2.5-0.5b\nhardware: {gpu: A100-80GB, gpus_per_node: 4}\n")
    r = cli(["validate", "p.yaml", "--deepspeed-check", "--json"], tmp_path, crash)
    report = json.loads(r.out)
    assert r.code == 0 and report["deepspeed_check"]["ran"] and report["deepspeed_check"]["errors"] == {"export": []}
