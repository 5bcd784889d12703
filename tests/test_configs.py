"""Configs drift silently: compose and instantiate every option of every group, and check
that user errors are one short line naming the valid choices."""

import inspect
from pathlib import Path

import lightning
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from maxpoolbert.errors import UserError

from .conftest import ROOT, run_train

CONFIGS = ROOT / "configs"
DESIGN = {
    "task": {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"},
    "pooling": {"cls", "max_cls", "mha", "maxpool_mha", "mean", "max", "layer_mix",
                "attention_weighted", "learned_weighted", "positional_weighted"},
    "model": {"minilm_l6", "bert_base", "tiny", "auto", "roberta_base", "electra_base", "deberta_v3_base",
              "modernbert_base", "distilbert_base"},
    "optimizer": {"adamw"},
    "logger": {"wandb", "csv", "none"},
}


def options(group: str) -> set[str]:
    return {p.stem for p in (CONFIGS / group).glob("*.yaml")}


def composed(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("group", list(DESIGN))
def test_design_names_exist(group):
    assert DESIGN[group] <= options(group)


@pytest.mark.parametrize("name", sorted(options("task")))
def test_every_task_instantiates(name):
    task = instantiate(composed(f"task={name}").task, _convert_="all")
    assert task.name == name and task.metric_keys and task.eval


@pytest.mark.parametrize("name", sorted(options("pooling")))
def test_every_pooling_instantiates(name):
    from transformers import BertConfig

    cfg = composed(f"pooling={name}")
    assert cfg.pooling.name == name
    module = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=BertConfig(hidden_size=64, num_attention_heads=4))
    assert isinstance(module, __import__("torch").nn.Module)


@pytest.mark.parametrize("name", sorted(options("model")))
def test_every_model_config_composes(name):
    cfg = composed(f"model={name}")
    assert cfg.model.name == name
    assert cfg.model.encoder._target_.startswith("maxpoolbert.encoders.")
    if name == "tiny":
        encoder = instantiate(cfg.model.encoder)
        assert encoder.config.num_hidden_layers == 2
    if name in ("minilm_l6", "tiny"):  # the others need the hub or a local copy: see the next tests
        assert instantiate(cfg.model.tokenizer).vocab_size == 30522


HUB_PRESETS = {"bert_base": "bert-base-uncased", "roberta_base": "FacebookAI/roberta-base",
               "electra_base": "google/electra-base-discriminator", "deberta_v3_base": "microsoft/deberta-v3-base",
               "modernbert_base": "answerdotai/ModernBERT-base", "distilbert_base": "distilbert/distilbert-base-uncased"}


@pytest.mark.parametrize("name", sorted(HUB_PRESETS))
def test_hub_presets_load_any_encoder(name):
    cfg = composed(f"model={name}")
    assert cfg.model.name_or_path == HUB_PRESETS[name]
    assert cfg.model.encoder._target_ == "maxpoolbert.encoders.pretrained"
    assert cfg.model.encoder.name_or_path == cfg.model.tokenizer.name_or_path == HUB_PRESETS[name]


def test_model_auto_needs_a_checkpoint(tmp_path):
    cfg = composed("model=auto", f"model.name_or_path={tmp_path}")
    assert cfg.model.encoder.name_or_path == str(tmp_path)
    proc = run_train("model=auto", "logger=none", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: model.name_or_path=???: model=auto needs a checkpoint; "
                                                "model.name_or_path=<hub id or local folder>"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_bert_base_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = composed("model=bert_base", "model.name_or_path=/nonexistent/bert-base-uncased")
    with pytest.raises(Exception) as info:
        instantiate(cfg.model.encoder)
    assert isinstance(info.value.__cause__, UserError)
    assert "point model.name_or_path= at a local copy" in str(info.value.__cause__)


@pytest.mark.parametrize("group", ["optimizer", "logger", "trainer", "experiment"])
def test_every_other_option_composes(group, tmp_path):
    for name in sorted(options(group)):
        cfg = composed(f"{group}={name}", f"hydra.run.dir={tmp_path}")
        assert cfg is not None
        if group == "optimizer":
            import torch
            opt = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(2))])
            assert opt.defaults["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name,target", [
    ("basic", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
    ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("submitit_local", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ("slurm", "hydra_plugins.maxpoolbert_plugins.plugins.WatchedSlurmLauncher"),
    ("slurm_cpu", "hydra_plugins.maxpoolbert_plugins.plugins.WatchedSlurmLauncher"),
])
def test_every_launcher_composes(name, target, tmp_path):
    launcher = composed(f"hydra/launcher={name}", f"hydra.run.dir={tmp_path}").hydra.launcher
    assert launcher._target_ == target
    if name == "slurm":  # our defaults on top of submitit_slurm: one GPU, requeue on pre-emption
        assert launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0
    if name == "slurm_cpu":  # no GPU, a small node's share
        assert launcher.gpus_per_node is None and launcher.cpus_per_task == 1 and launcher.max_num_timeout > 0


def test_experiments_define_their_grids(tmp_path):
    grid = composed("experiment=glue_grid", f"hydra.run.dir={tmp_path}")
    params = grid.hydra.sweeper.params
    assert set(params.task.split(",")) == DESIGN["task"] and params.seed == "1,2,3,4,5"
    assert params.pooling.split(",") == ["cls", "max_cls", "mha", "maxpool_mha"]
    assert composed("experiment=glue_grid", "task=mrpc").trainer.max_epochs == 5
    assert composed("experiment=glue_grid", "task=rte").trainer.max_epochs == 3
    low = composed("experiment=low_resource", f"hydra.run.dir={tmp_path}").hydra.sweeper.params
    assert low["data.train_size"] == "100,250,500,1000,null" and set(low.task.split(",")) == {"rte", "mrpc", "stsb", "cola"}


def test_trainer_config_lists_every_trainer_flag():
    params = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
    listed = set(OmegaConf.load(CONFIGS / "trainer" / "default.yaml")) - {"_target_"}
    assert params == listed


def test_defaults_match_design():
    cfg = composed()
    choices = cfg.hydra.runtime.choices
    assert (choices.task, choices.pooling, choices.model, choices.optimizer, choices.logger) == (
        "rte", "maxpool_mha", "minilm_l6", "adamw", "wandb")
    assert cfg.seed == 1 and cfg.data.max_length == 128 and cfg.data.batch_size == 32
    assert cfg.optimizer.lr == 2e-5 and cfg.trainer.max_epochs == 3 and cfg.scheduler.warmup_ratio == 0.1


@pytest.mark.parametrize("override,expected", [
    ("pooling=nope", ["Could not find 'pooling/nope'", "maxpool_mha", "attention_weighted"]),
    ("task=nope", ["Could not find 'task/nope'", "rte", "mnli"]),
    ("model=nope", ["Could not find 'model/nope'", "minilm_l6", "bert_base"]),
])
def test_unknown_names_list_valid_choices(tmp_path, override, expected):
    proc = run_train(override, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    for text in expected:
        assert text in out


def test_missing_data_source_is_one_line(tmp_path, cache_dir):
    proc = run_train("model=tiny", "logger=none", f"hydra.run.dir={tmp_path}/run",
                     cwd=tmp_path, check=False, env={"GLUE_DIR": "", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: data.glue_dir=null: no data for task rte (nyu-mll/glue is neither reachable nor cached" in proc.stderr
    assert "; a GLUE folder in its official layout (GLUE_DIR or data.glue_dir=" in proc.stderr
    assert Path(tmp_path, "run", "failed.json").exists()


def test_glue_dir_without_the_task_names_the_file(tmp_path):
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    proc = run_train("model=tiny", "logger=none", f"data.glue_dir={tmp_path}/glue", f"hydra.run.dir={tmp_path}/run",
                     "data.cache_dir=null", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: data.glue_dir={tmp_path}/glue: missing data file {tmp_path}/glue/RTE/train.tsv (task rte)" in proc.stderr


@pytest.mark.parametrize(("overrides", "fused"), [
    ([], True),                                                     # CPU default: 32-true + clipping
    (["trainer=gpu"], False),                                       # bf16-mixed + clipping: Lightning refuses fused
    (["trainer=gpu", "trainer.gradient_clip_val=null"], True),
    (["optimizer.fused=false"], None),                              # explicit choices are left alone
    (["trainer=gpu", "optimizer.fused=true"], None),
])
def test_fused_adamw_auto(overrides, fused):
    from maxpoolbert.run import _optimizer_overrides

    cfg = composed(*overrides)
    got = _optimizer_overrides(cfg)
    assert got == ({} if fused is None else {"fused": fused})
    optimizer = instantiate(cfg.optimizer, **got)(params=[torch.nn.Parameter(torch.zeros(2))])
    assert bool(optimizer.defaults["fused"]) == bool(fused if fused is not None else cfg.optimizer.fused)
