"""Every bad setting is refused in one line that names it: ``error: <key>=<value>: <what is
wrong>; <what is allowed>``, exit code 2, no traceback, nothing trained and, for the settings the
schema checks, no run folder made and nothing heavy imported (a second or so). Each case's wall
time is printed in the session summary, not asserted: the machine may be shared.

All cases run as ``python train.py ...`` subprocesses, two at a time, in one module fixture; each
parametrized test then checks its own case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from maxpoolbert import schema
from maxpoolbert.errors import UserError

from .conftest import ROOT, TIMINGS

# The schema's refusals: (overrides, the key the message must name). Every range it defines.
SCHEMA = [
    (["seed=abc"], "seed"), (["seed=-1"], "seed"), (["seed=1.5"], "seed"), (["seed=4294967296"], "seed"),
    (["data.train_size=0"], "data.train_size"), (["data.train_size=-5"], "data.train_size"),
    (["data.train_size=abc"], "data.train_size"),
    (["data.batch_size=0"], "data.batch_size"), (["~data.batch_size"], "data.batch_size"), (["data.eval_batch_size=0"], "data.eval_batch_size"),
    (["data.max_length=0"], "data.max_length"), (["data.max_length=-1"], "data.max_length"),
    (["data.subset_seed=-1"], "data.subset_seed"), (["data.num_workers=-1"], "data.num_workers"),
    (["data.pad_to_max_length=maybe"], "data.pad_to_max_length"), (["data.group_by_length=2"], "data.group_by_length"),
    (["data.pin_memory=yes"], "data.pin_memory"), (["data.glue_dir=/nonexistent/glue"], "data.glue_dir"),
    (["head.dropout=1.0"], "head.dropout"), (["head.dropout=-0.1"], "head.dropout"),
    (["head.use_pooler=2"], "head.use_pooler"),
    (["scheduler.warmup_ratio=1.5"], "scheduler.warmup_ratio"), (["scheduler.warmup_ratio=-0.1"], "scheduler.warmup_ratio"),
    (["checkpoint.every_n_epochs=-1"], "checkpoint.every_n_epochs"), (["checkpoint.keep=maybe"], "checkpoint.keep"),
    (["speed.threads=0"], "speed.threads"), (["speed.compile=fast"], "speed.compile"), (["speed.tf32=1"], "speed.tf32"),
    (["save_model=maybe"], "save_model"), (["skip_finished=2"], "skip_finished"),
    (["optimizer.lr=-1"], "optimizer.lr"), (["optimizer.lr=abc"], "optimizer.lr"), (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.weight_decay=-0.01"], "optimizer.weight_decay"), (["optimizer.eps=0"], "optimizer.eps"),
    (["optimizer.betas=[1.0,0.999]"], "optimizer.betas"), (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer.fused=maybe"], "optimizer.fused"),
    (["optimizer.layer_decay=0"], "optimizer.layer_decay"), (["optimizer.layer_decay=1.5"], "optimizer.layer_decay"),
    (["model.reinit_layers=-1"], "model.reinit_layers"),
    (["eval.select=worst"], "eval.select"), (["eval.per_epoch=0"], "eval.per_epoch"),
    (["eval.early_stopping=0"], "eval.early_stopping"),
    (["pooling.module.k=0"], "pooling.module.k"), (["pooling.module.num_heads=0"], "pooling.module.num_heads"),
    (["pooling.module.dropout=1.0"], "pooling.module.dropout"), (["pooling.module.residual=maybe"], "pooling.module.residual"),
    (["pooling.module.layer_norm=2"], "pooling.module.layer_norm"),
    (["pooling=layer_mix", "pooling.module.include_embeddings=maybe"], "pooling.module.include_embeddings"),
    (["pooling=learned_weighted", "pooling.module.scorer_hidden=0"], "pooling.module.scorer_hidden"),
    (["pooling=positional_weighted", "pooling.module.max_positions=0"], "pooling.module.max_positions"),
    (["pooling=positional_weighted", "pooling.module.max_positions=64"], "pooling.module.max_positions"),
    (["trainer.max_epochs=0"], "trainer.max_epochs"), (["trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["trainer.max_steps=0"], "trainer.max_steps"), (["trainer.max_steps=-2"], "trainer.max_steps"),
    (["trainer.min_epochs=-1"], "trainer.min_epochs"), (["trainer.min_steps=-1"], "trainer.min_steps"),
    (["trainer.devices=0"], "trainer.devices"), (["trainer.num_nodes=0"], "trainer.num_nodes"),
    (["trainer.precision=17"], "trainer.precision"), (["trainer.accelerator=quantum"], "trainer.accelerator"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
    (["trainer.gradient_clip_algorithm=max"], "trainer.gradient_clip_algorithm"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches"),  # 0 steps: a "finished" run that never trained
    (["trainer.limit_train_batches=0.0"], "trainer.limit_train_batches"),
    (["trainer.limit_val_batches=-1"], "trainer.limit_val_batches"),
    (["trainer.overfit_batches=-1"], "trainer.overfit_batches"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch"),
    (["trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"), (["trainer.fast_dev_run=-1"], "trainer.fast_dev_run"),
    (["trainer.deterministic=maybe"], "trainer.deterministic"),
    (["trainer.reload_dataloaders_every_n_epochs=-1"], "trainer.reload_dataloaders_every_n_epochs"),
    (["trainer.enable_progress_bar=2"], "trainer.enable_progress_bar"),
    (["task.num_labels=0"], "task.num_labels"), (["task.label_values=[a,b,c]"], "task.label_values"),
    (["task.text_fields=[]"], "task.text_fields"), (["task.text_fields=[a,b,c]"], "task.text_fields"),
    (["task=qqp", "task.skip_malformed=maybe"], "task.skip_malformed"),
    (["model=tiny", "model.encoder.num_attention_heads=5"], "model.encoder.num_attention_heads"),
    (["model=tiny", "model.encoder.hidden_size=0"], "model.encoder.hidden_size"),
    (["model=tiny", "model.encoder.num_hidden_layers=0"], "model.encoder.num_hidden_layers"),
    (["hydra.run.dir={file}/run"], "hydra.run.dir"), (["hydra.run.dir=/proc/run"], "hydra.run.dir"),
    (["data.cache_dir={file}/cache"], "data.cache_dir"),
]
# Refusals that need the encoder or the data: after the heavy imports, before training.
SMALL = ["model=tiny", "pooling=cls", "logger=none", "data.cache_dir=null", "trainer.max_steps=2",
         "trainer.enable_progress_bar=false"]
LATE = [
    (["pooling=mha", "pooling.module.num_heads=5"], "pooling.module.num_heads"),
    (["pooling=max_cls", "pooling.module.k=3"], "pooling.module.k"),  # tiny: 2 layers
    (["data.max_length=1000"], "data.max_length"),  # tiny: 512 positions
    (["model.reinit_layers=3"], "model.reinit_layers"),  # tiny: 2 layers
    (["data.glue_dir={glue}/header_only"], "data.glue_dir"),
    (["data.glue_dir={glue}/latin1"], "data.glue_dir"),
    (["data.glue_dir={glue}/good", "data.train_size=7"], "data.train_size"),  # 6 rows
]
HEADER = "index\tsentence1\tsentence2\tlabel\n"
ROWS = [f"{i}\tA man walks {i}.\tSomeone walks.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(6)]
GOOD = HEADER + "".join(ROWS)
RTE_FILES = {  # folder -> (train.tsv, dev.tsv)
    "good": (GOOD, GOOD),
    "header_only": (HEADER, GOOD),
    "latin1": (HEADER + ROWS[0] + ROWS[1] + "2\tUn caf\xe9.\tx\tentailment\n", GOOD),  # line 4
}
ENCODING = {"latin1": "latin-1"}
EXPECTED_TEXT = {"latin1": "train.tsv:4: not UTF-8 (byte 0xe9)", "header_only": "no rows in"}  # besides the key
# (malformed rows, bad labels, missing files: tests/test_tasks.py and tests/test_configs.py)


def case_id(overrides: list[str]) -> str:
    return " ".join(overrides).replace("{file}", "FILE").replace("{glue}/", "")


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("validation")
    (root / "a_file").write_text("not a folder\n")
    for name, files in RTE_FILES.items():
        folder = root / "glue" / name / "RTE"
        folder.mkdir(parents=True)
        for fname, text in zip(("train.tsv", "dev.tsv"), files, strict=True):
            (folder / fname).write_bytes(text.encode(ENCODING.get(name, "utf-8")))
    return {"root": root, "file": root / "a_file", "glue": root / "glue"}


def run(args: list[str], cwd: Path, module: str | None = None) -> dict:
    cmd = [sys.executable, *(["-m", module] if module else [str(ROOT / "train.py")]), *args]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "s": time.perf_counter() - start}


@pytest.fixture(scope="module")
def outcomes(places) -> dict[str, dict]:
    """Every case of SCHEMA and LATE, run two at a time; keyed by case_id."""
    cases = [(o, False) for o, _ in SCHEMA] + [(o, True) for o, _ in LATE]

    def one(case):
        overrides, late = case
        cwd = places["root"] / f"case{cases.index(case)}"
        cwd.mkdir()
        args = [o.format(file=places["file"], glue=places["glue"]) for o in overrides]
        if late:
            own_data = any(a.startswith("data.glue_dir=") for a in args)
            args = [*SMALL, *([] if own_data else [f"data.glue_dir={places['glue']}/good"]), *args]
        if not any(a.startswith("hydra.run.dir=") for a in args):
            args.append(f"hydra.run.dir={cwd}/run")
        result = run(args, cwd)
        return case_id(overrides), result | {"cwd": cwd}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, cases))


def assert_one_line(result: dict, key: str) -> str:
    lines = [line for line in result["out"].splitlines() if line.strip()]
    assert "Traceback" not in result["out"], result["out"]
    assert result["rc"] == 2, result["out"]
    assert len(lines) == 1, result["out"]
    assert lines[0].startswith(f"error: {key}="), lines[0]
    assert ": " in lines[0][len(f"error: {key}="):] and "; " in lines[0], lines[0]  # what is wrong; what is allowed
    return lines[0]


@pytest.mark.parametrize(("overrides", "key"), SCHEMA, ids=[case_id(o) for o, _ in SCHEMA])
def test_schema_refuses_before_anything_runs(outcomes, overrides, key):
    result = outcomes[case_id(overrides)]
    TIMINGS.append((result["s"], f"train.py {case_id(overrides)}"))
    line = assert_one_line(result, key)
    assert not (result["cwd"] / "run").exists()  # refused before Hydra made the run folder
    value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith(key + "=")), None)
    if value is not None and "{" not in value:
        assert line.startswith(f"error: {key}={value}:"), line


@pytest.mark.parametrize(("overrides", "key"), LATE, ids=[case_id(o) for o, _ in LATE])
def test_encoder_and_data_problems_refused_before_training(outcomes, overrides, key):
    result = outcomes[case_id(overrides)]
    TIMINGS.append((result["s"], f"train.py {case_id(overrides)} (tiny model)"))
    line = assert_one_line(result, key)
    folder = next((o.split("/")[-1] for o in overrides if o.startswith("data.glue_dir=")), "")
    assert EXPECTED_TEXT.get(folder, "") in line
    run_dir = result["cwd"] / "run"
    assert not (run_dir / "results.json").exists() and not (run_dir / "checkpoints").exists()
    assert json.loads((run_dir / "failed.json").read_text())["user_error"] is True


def test_the_schema_imports_nothing_heavy():
    code = ("import sys, maxpoolbert.callbacks, maxpoolbert.schema, maxpoolbert.tasks; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'lightning', 'datasets'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def configs_of_every_group() -> list[list[str]]:
    groups = ["task", "pooling", "model", "optimizer", "trainer", "logger", "experiment"]
    return [[f"{g}={p.stem}"] for g in groups for p in sorted((ROOT / "configs" / g).glob("*.yaml"))]


@pytest.mark.parametrize("overrides", configs_of_every_group(), ids=lambda o: o[0])
def test_every_config_passes_the_schema(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        schema.check(compose("config", overrides=overrides))


def test_message_names_key_value_problem_and_allowed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.max_epochs=0"])
    with pytest.raises(UserError) as info:
        schema.check(cfg)
    assert str(info.value) == "trainer.max_epochs=0: too small; an integer at least 1, or -1, or null"


def test_multirun_shared_bad_value_stops_before_any_job(tmp_path):
    result = run(["-m", "seed=1,2", "data.batch_size=0", *SMALL, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    TIMINGS.append((result["s"], "train.py -m seed=1,2 data.batch_size=0"))
    assert_one_line(result, "data.batch_size")
    assert not (tmp_path / "sweep").exists()


def test_multirun_sweep_dir_unwritable(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run(["-m", "seed=1,2", *SMALL, f"hydra.sweep.dir={tmp_path}/a_file/sweep"], tmp_path)
    TIMINGS.append((result["s"], "train.py -m seed=1,2 hydra.sweep.dir=FILE/sweep"))
    assert_one_line(result, "hydra.sweep.dir")


def test_multirun_bad_value_in_one_job_fails_that_job_only(real_glue, tmp_path):
    result = run(["-m", "seed=1,-1", *SMALL, "data.train_size=16", "save_model=false",
                  f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert result["rc"] != 0 and "Traceback" not in result["out"]
    failed = list((tmp_path / "sweep").rglob("failed.json"))
    assert len(failed) == 1 and "seed=-1" in failed[0].parent.name
    assert json.loads(failed[0].read_text())["error"].startswith("UserError: seed=-1: too small;")
    done = list((tmp_path / "sweep").rglob("results.json"))
    assert len(done) == 1 and "seed=1" in done[0].parent.name


def test_report_out_unwritable(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run(["--runs", str(tmp_path), "--out", f"{tmp_path}/a_file/reports"], ROOT, module="maxpoolbert.report")
    TIMINGS.append((result["s"], "maxpoolbert.report --out FILE/reports"))
    assert_one_line(result, "--out")


def test_predict_out_unwritable(tmp_path, real_glue):
    """A finished-looking run (its config, results and a weights file): the --out check comes
    before any weights are read."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", f"data.glue_dir={real_glue}"])
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run_dir / "results.json").write_text('{"task": "rte", "pooling": "maxpool_mha", "model": "tiny", "seed": 1, '
                                          '"metrics": {"accuracy": 0.5}, "score": 0.5}')
    (run_dir / "model.safetensors").write_bytes(b"")
    (tmp_path / "a_file").write_text("")
    result = run([str(run_dir), "--out", f"{tmp_path}/a_file/out"], ROOT, module="maxpoolbert.predict")
    TIMINGS.append((result["s"], "maxpoolbert.predict RUN --out FILE/out"))
    assert_one_line(result, "--out")
