"""Configs drift silently: compose and instantiate every option of every group (the names come
from configs/, so a new YAML is covered without editing a list), and check that user errors are
one short line naming the valid choices."""

import inspect
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch
import transformers
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf, open_dict

from maxpoolbert.config import schema
from maxpoolbert.core.errors import UserError

from .conftest import CONFIGS, config_groups, config_names, run_train

DESIGN = {
    "task": {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "boolq", "cb"},
    "pooling": {"cls", "max_cls", "mha", "maxpool_mha", "mean", "max", "layer_mix",
                "attention_weighted", "learned_weighted", "positional_weighted"},
    "model": {"minilm_l6", "bert_base", "tiny", "auto", "roberta_base", "electra_base", "deberta_v3_base",
              "modernbert_base", "distilbert_base"},
    "optimizer": {"adamw"},
    "logger": {"wandb", "csv", "none"},
}
# Model presets that load from the hub: their hub id, and the encoder family (tests/tiny_families.py)
# of the tiny random checkpoint that stands in for it offline.
HUB_PRESETS = {"bert_base": ("bert-base-uncased", "bert"), "roberta_base": ("FacebookAI/roberta-base", "roberta"),
               "electra_base": ("google/electra-base-discriminator", "electra"),
               "deberta_v3_base": ("microsoft/deberta-v3-base", "deberta-v2"),
               "modernbert_base": ("answerdotai/ModernBERT-base", "modernbert"),
               "distilbert_base": ("distilbert/distilbert-base-uncased", "distilbert")}
TRAINER_ARGS = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}


def composed(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("group", list(DESIGN))
def test_design_names_exist(group):
    assert DESIGN[group] <= set(config_names(group))


# ---------------------------------------------------------------------------- every config of every group
# Each config group, or part of the Hydra config, that a config can change -> where it sits in the
# composed config and how it is instantiated (a check below). A config is checked for its own
# group and for every one of these that it changes (an experiment: the trainer, the sweeper, ...).
NODES = {"task": "task", "pooling": "pooling", "model": "model", "optimizer": "optimizer", "trainer": "trainer",
         "logger": "logger", "hydra/launcher": "hydra.launcher", "hydra/sweeper": "hydra.sweeper",
         "hydra/callbacks": "hydra.callbacks"}
CASES = [(group, name) for group in config_groups() for name in config_names(group)]


@contextmanager
def job(*overrides: str, tmp_path: Path):
    """The config of ``python train.py <overrides>`` (Hydra's node included) as the job sees it:
    ``${hydra:runtime.output_dir}`` is ``tmp_path/run``; Hydra's config loader at hand."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"hydra.run.dir={tmp_path}/run",
                                           f"hydra.sweep.dir={tmp_path}/sweep"], return_hydra_config=True)
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        HydraConfig.instance().set_config(cfg)
        try:
            yield cfg
        finally:
            HydraConfig.instance().cfg = None  # no other test sees this job's Hydra config


def node(cfg, group: str):
    value = OmegaConf.select(cfg, NODES[group])
    return OmegaConf.to_container(value, resolve=False, throw_on_missing=False) if value is not None else None


def check_task(cfg, ctx):
    from maxpoolbert.tasks.task import from_config

    task = from_config(cfg.task)
    assert isinstance(task, get_class(cfg.task._target_)) and task.name == cfg.task.name and task.metric_keys


def check_pooling(cfg, ctx):
    from maxpoolbert.model.pooling import Pooling

    encoder = transformers.BertConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=cfg.data.max_length)
    module = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=encoder)
    assert isinstance(module, Pooling)
    hidden = tuple(torch.randn(2, 5, 48) for _ in range(4))  # embeddings + 3 layers
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    attentions = tuple(torch.softmax(torch.randn(2, 4, 5, 5), -1) for _ in range(3))
    pooled = module(hidden, mask, attentions if module.needs_attentions else None)
    assert pooled.ndim == 2 and pooled.shape[0] == 2 and torch.isfinite(pooled).all()


def check_model(cfg, ctx):
    """Encoder and tokenizer; a hub preset (or model=auto) loads a tiny random checkpoint of its
    family instead, offline."""
    name = cfg.hydra.runtime.choices.model
    assert cfg.model.encoder._target_.startswith("maxpoolbert.model.encoders.")
    family = None
    if cfg.model.encoder._target_ == "maxpoolbert.model.encoders.pretrained":
        if OmegaConf.is_missing(cfg.model, "name_or_path"):  # model=auto: any checkpoint
            family = "bert"
        elif not cfg.model.name_or_path.startswith("pkg:"):  # the hub
            assert name in HUB_PRESETS, f"add expectations for model={name}: its hub id and family to HUB_PRESETS"
            hub_id, family = HUB_PRESETS[name]
            assert cfg.model.name_or_path == cfg.model.encoder.name_or_path == cfg.model.tokenizer.name_or_path == hub_id
        if family:
            cfg.model.name_or_path = str(ctx.tiny_checkpoint(family))
    encoder, tokenizer = instantiate(cfg.model.encoder), instantiate(cfg.model.tokenizer)
    assert isinstance(encoder, transformers.PreTrainedModel)
    assert encoder.config.model_type == (family or encoder.config.model_type)
    batch = tokenizer(["A man plays a flute.", "Short."], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.last_hidden_state.shape == (*batch["input_ids"].shape, encoder.config.hidden_size)


def check_optimizer(cfg, ctx):
    from maxpoolbert.training import optim

    layer = torch.nn.Linear(4, 2)
    optimizer = optim.from_config(cfg)(params=layer.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.defaults["lr"] == cfg.optimizer.lr
    layer(torch.ones(1, 4)).sum().backward()
    optimizer.step()


def check_trainer(cfg, ctx):
    """The project's own Trainer (maxpoolbert.training.trainer.build_trainer). What this machine lacks (a
    GPU, cores for ddp) is one line naming the setting; then it is built on the CPU."""
    from maxpoolbert.training.trainer import build_trainer

    unknown = sorted(set(cfg.trainer) - TRAINER_ARGS - {"_target_"})
    assert not unknown, f"trainer.{', trainer.'.join(unknown)}: not lightning.Trainer arguments"
    threads, refused = torch.get_num_threads(), []
    try:
        for fallback in ({}, {"accelerator": "cpu"}, {"accelerator": "cpu", "devices": 1},
                         {"accelerator": "cpu", "devices": 1, "precision": "32-true"}):  # a CPU without bf16
            cfg.trainer.update(fallback)
            try:
                trainer = build_trainer(cfg, callbacks=[], logger=False)
                break
            except UserError as err:
                refused.append(str(err))
                assert "\n" not in str(err) and str(err).startswith("trainer."), str(err)
        else:
            pytest.fail(f"no Trainer even on one CPU: {refused}")
    finally:
        torch.set_num_threads(threads)  # a data-parallel trainer takes its share of the cores
    assert isinstance(trainer, lightning.Trainer)
    assert (trainer.max_epochs, trainer.max_steps) == (cfg.trainer.max_epochs, cfg.trainer.max_steps)
    assert trainer.precision == str(cfg.trainer.precision)
    assert Path(trainer.default_root_dir) == ctx.tmp_path / "run"
    if isinstance(cfg.trainer.devices, int):
        assert trainer.world_size == cfg.trainer.devices


def check_logger(cfg, ctx):
    from maxpoolbert.training import loggers

    logger = loggers.from_config(cfg)
    if logger in (None, False):  # logger=none
        return
    assert isinstance(logger, lightning.pytorch.loggers.Logger)
    assert Path(logger.save_dir).resolve().is_relative_to(ctx.tmp_path.resolve())


def hydra_context(cfg) -> HydraContext:
    return HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))


def check_launcher(cfg, ctx):
    launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context(cfg), task_function=print,
                                                       config=cfg)
    assert isinstance(launcher, Launcher) and isinstance(launcher, get_class(cfg.hydra.launcher._target_))


def check_sweeper(cfg, ctx):
    """The sweeper (which makes its launcher); the swept keys exist, swept config groups name
    existing configs."""
    sweeper = Plugins.instance().instantiate_sweeper(hydra_context=hydra_context(cfg), task_function=print,
                                                     config=cfg)
    assert isinstance(sweeper, Sweeper) and isinstance(sweeper, get_class(cfg.hydra.sweeper._target_))
    for key, value in (cfg.hydra.sweeper.get("params") or {}).items():
        override = OverridesParser.create().parse_override(f"{key}={value}")
        if key in config_groups():
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            assert set(values) <= set(config_names(key)), f"sweeps {key}={value}: no such config"
        elif not key.startswith("+"):
            assert OmegaConf.select(cfg, key, default=KeyError) is not KeyError, f"sweeps {key}: no such key"


def check_callbacks(cfg, ctx):
    for name, spec in cfg.hydra.callbacks.items():
        assert isinstance(instantiate(spec), Callback), name


CHECKS = {"task": check_task, "pooling": check_pooling, "model": check_model, "optimizer": check_optimizer,
          "trainer": check_trainer, "logger": check_logger, "hydra/launcher": check_launcher,
          "hydra/sweeper": check_sweeper, "hydra/callbacks": check_callbacks}


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """What the default config holds in each of NODES."""
    with job(tmp_path=tmp_path_factory.mktemp("defaults")) as cfg:
        return {group: node(cfg, group) for group in NODES} | {"choices": dict(cfg.hydra.runtime.choices)}


@pytest.mark.parametrize(("group", "name"), CASES, ids=[f"{g}={n}" for g, n in CASES])
def test_every_config_composes_and_instantiates(group, name, defaults, tmp_path, tiny_checkpoint, monkeypatch):
    """``<group>=<name>`` for every YAML under configs/: composed, valid for the schema, and what it
    defines or changes instantiated: a Task, a pooling module that pools, an encoder and tokenizer,
    an optimizer that steps, a Trainer, a logger, Hydra's launcher, sweeper and callbacks."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    ctx = SimpleNamespace(tmp_path=tmp_path, tiny_checkpoint=tiny_checkpoint)
    baselines = [defaults]
    if group not in CHECKS and group in defaults["choices"]:  # one that changes others: also against none of it
        with job(f"~{group}", tmp_path=tmp_path / "without") as without:
            baselines.append({g: node(without, g) for g in NODES})
    with job(f"{'' if group in defaults['choices'] else '+'}{group}={name}", tmp_path=tmp_path) as cfg:
        assert cfg.hydra.runtime.choices[group] == name
        if group in ("task", "pooling", "model"):
            assert cfg[group].name == name, f"configs/{group}/{name}.yaml: name: {cfg[group].name}"
        # a value the config leaves for the command line (model=auto's ???): what a sweep over it checks
        schema.check(cfg, swept={k for k in schema.missing_keys(schema.plain(cfg)) if not k.startswith("hydra.")})
        changed = {g for g in NODES if any(node(cfg, g) != baseline[g] for baseline in baselines)}
        checked = sorted({group} & set(CHECKS) | changed)
        assert checked, (f"configs/{group}/{name}.yaml changes nothing that tests/test_configs.py instantiates: "
                         f"add a check for group {group} to CHECKS")
        for part in checked:
            CHECKS[part](cfg, ctx)


@pytest.mark.parametrize(("flags", "refused"), [(set(), True), ({"avx512f", "avx512_bf16"}, False),
                                               ({"amx_bf16"}, False), (None, False)])
def test_bf16_on_a_cpu_without_it_is_refused_in_one_line(flags, refused, tmp_path, monkeypatch):
    """bf16 autocast on a CPU without bf16 instructions runs emulated, slower than fp32: refused,
    naming the setting; where the flags cannot be read (not Linux) it is left to the user."""
    from maxpoolbert.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_flags", lambda: flags)
    with job("trainer.precision=bf16-mixed", "trainer.accelerator=cpu", tmp_path=tmp_path) as cfg:
        if refused:
            with pytest.raises(UserError) as err:
                trainer_module.build_trainer(cfg, callbacks=[], logger=False)
            assert str(err.value).startswith("trainer.precision=bf16-mixed: this CPU has no bf16 instructions")
            assert "allowed: 32-true" in str(err.value) and "\n" not in str(err.value)
        else:
            assert trainer_module.build_trainer(cfg, callbacks=[], logger=False).precision == "bf16-mixed"


def test_the_cpu_flags_are_read_where_linux_has_them():
    from maxpoolbert.training.trainer import cpu_bf16, cpu_flags

    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    assert cpu_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert flags and all(" " not in f for f in flags)


def test_trainer_configs_name_only_trainer_arguments():
    """Every key of every trainer YAML is a lightning.Trainer argument (a misspelt one fails here,
    a new Lightning argument does not); logger and callbacks come from the run code."""
    for name in config_names("trainer"):
        keys = set(OmegaConf.load(CONFIGS / "trainer" / f"{name}.yaml")) - {"_target_", "defaults"}
        unknown = sorted(keys - (TRAINER_ARGS - {"logger", "callbacks"}))
        assert not unknown, f"configs/trainer/{name}.yaml: {', '.join(unknown)}: not lightning.Trainer arguments"


@pytest.mark.slow
def test_any_trainer_flag_without_a_plus(tmp_path):
    """trainer.<flag>= sets any lightning.Trainer argument, also one configs/trainer does not list
    (lightning/trainer_flags holds them all, read from the installed Trainer's signature); a
    misspelt flag is refused by Hydra, naming it."""
    import inspect

    import lightning

    from maxpoolbert.config.lightning_flags import SKIP, trainer_defaults

    signature = inspect.signature(lightning.Trainer.__init__).parameters
    assert set(trainer_defaults()) == {k for k in signature if k not in {"self", *SKIP}}
    assert all(trainer_defaults()[k] == p.default for k, p in signature.items() if k in trainer_defaults())
    cfg = composed("trainer.max_epochs=7", "trainer.limit_val_batches=0.25", "trainer.max_steps=9",
                   "trainer.overfit_batches=0")
    trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)
    assert (trainer.max_epochs, trainer.max_steps, trainer.limit_val_batches) == (7, 9, 0.25)
    with pytest.raises(ConfigCompositionException, match=r"limt_val_batches"):
        composed("trainer.limt_val_batches=0.25")
    proc = run_train("trainer.limt_val_batches=0.25", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: trainer.limt_val_batches=0.25: not a flag of lightning.Trainer "
                                          "(did you mean trainer.limit_val_batches?); its flags are accelerator,")


@pytest.mark.slow
def test_model_auto_needs_a_checkpoint(tmp_path):
    cfg = composed("model=auto", f"model.name_or_path={tmp_path}")
    assert cfg.model.encoder.name_or_path == str(tmp_path)
    proc = run_train("model=auto", "logger=none", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: model.name_or_path=???: model=auto needs a checkpoint; "
                                                "a hub id (FacebookAI/roberta-base) or a folder written by "
                                                "save_pretrained"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_bert_base_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = composed("model=bert_base", "model.name_or_path=/nonexistent/bert-base-uncased")
    with pytest.raises(Exception) as info:
        instantiate(cfg.model.encoder)
    assert isinstance(info.value.__cause__, UserError)
    assert "point model.name_or_path= at a local copy" in str(info.value.__cause__)


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
    glue = {n for n in config_names("task") if OmegaConf.load(CONFIGS / "task" / f"{n}.yaml").benchmark == "glue"}
    assert set(params.task.split(",")) == glue and params.seed == "1,2,3,4,5"
    assert params.pooling.split(",") == ["cls", "max_cls", "mha", "maxpool_mha"]
    assert composed("experiment=glue_grid", "task=mrpc").trainer.max_epochs == 5
    assert composed("experiment=glue_grid", "task=rte").trainer.max_epochs == 3
    low = composed("experiment=low_resource", f"hydra.run.dir={tmp_path}").hydra.sweeper.params
    assert low["data.train_size"] == "100,250,500,1000,null" and set(low.task.split(",")) == {"rte", "mrpc", "stsb", "cola"}


def test_defaults_match_design():
    cfg = composed()
    choices = cfg.hydra.runtime.choices
    assert (choices.task, choices.pooling, choices.model, choices.optimizer, choices.logger) == (
        "rte", "maxpool_mha", "minilm_l6", "adamw", "wandb")
    assert cfg.seed == 1 and cfg.data.max_length == 128 and cfg.data.batch_size == 32
    assert cfg.optimizer.lr == 2e-5 and cfg.trainer.max_epochs == 3 and cfg.scheduler.warmup_ratio == 0.1


@pytest.mark.parametrize(("args", "line"), [
    (["task=rtee"], "task=rtee: no task of that name (did you mean rte?); one of boolq, cb, cola, mnli, mrpc, "
                    "qnli, qqp, rte, sst2, stsb, wnli"),
    (["pooling=maxpol"], "pooling=maxpol: no pooling of that name (did you mean maxpool_mha?); one of attention_weighted,"),
    (["model=tinyy"], "model=tinyy: no model of that name (did you mean tiny?); one of auto,"),
    (["optimizer=adamx"], "optimizer=adamx: no optimizer of that name (did you mean adamw?); one of adamw"),
    (["optimizer="], "optimizer=: no optimizer of that name; one of adamw"),
    (["logger=wandbb"], "logger=wandbb: no logger of that name (did you mean wandb?); one of csv, none, wandb"),
    (["trainer=defualt"], "trainer=defualt: no trainer of that name (did you mean default?); one of ddp, default, gpu"),
    (["experiment=smokee"], "experiment=smokee: no experiment of that name (did you mean smoke?); one of"),
    (["hydra/launcher=jobib"], "hydra/launcher=jobib: no hydra/launcher of that name (did you mean joblib?); one of"),
    (["-m", "task=rte,mrpce"], "task=mrpce: no task of that name (did you mean mrpc?); one of boolq,"),
    (["trainer.max_epoch=1"], "trainer.max_epoch=1: not a flag of lightning.Trainer (did you mean "
                              "trainer.max_epochs?); its flags are accelerator, strategy,"),
    (["+trainer.max_epoch=1"], "trainer.max_epoch=1: not a flag of lightning.Trainer (did you mean "
                               "trainer.max_epochs?); its flags are accelerator, strategy,"),
])
def test_a_misspelt_name_is_refused_from_the_command_line_alone(args, line):
    """Before Hydra composes anything (nothing loaded, no folder): the command line alone."""
    with pytest.raises(UserError) as err:
        schema.check_command_line(args)
    assert str(err.value).startswith(line)


@pytest.mark.parametrize("args", [
    ["task=rte", "pooling=cls,maxpool_mha", "-m"], ["experiment=null"], ["task=glob(r*)", "-m"],
    ["+trainer.max_time=00:00:01:00", "trainer.max_epochs=2"], ["~trainer.max_steps"], ["seed=1,2", "-m"],
    ["--config-path", "/elsewhere", "task=mine"], ["-cn", "config", "task=mrpc"], ["hydra/launcher=joblib"],
])
def test_the_command_line_check_lets_real_names_through(args):
    schema.check_command_line(args)


def test_a_task_of_ones_own_on_the_search_path_is_known(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "reviews.yaml").write_text("name: reviews\n")
    schema.check_command_line([f"hydra.searchpath=[file://{tmp_path}]", "task=reviews"])
    schema.check_command_line(["--config-dir", str(tmp_path), "task=reviews"])
    with pytest.raises(UserError, match="did you mean reviews"):
        schema.check_command_line([f"hydra.searchpath=[file://{tmp_path}]", "task=review"])


@pytest.mark.slow
@pytest.mark.parametrize("override", ["task=rtee", "+trainer.max_epoch=1"])
def test_a_misspelt_name_is_one_line_exit_2_and_no_folder(tmp_path, override):
    proc = run_train(override, "model=tiny", "logger=none", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(f"error: {override.lstrip('+')}: ")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_missing_data_source_is_one_line(tmp_path, cache_dir):
    proc = run_train("model=tiny", "logger=none", f"hydra.run.dir={tmp_path}/run",
                     cwd=tmp_path, check=False, env={"GLUE_DIR": "", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: data.glue_dir=null: no data for task rte (nyu-mll/glue is neither reachable nor cached" in proc.stderr
    assert "; a GLUE folder in its official layout (GLUE_DIR or data.glue_dir=" in proc.stderr
    assert not Path(tmp_path, "run").exists()  # refused before training: the folder it made is gone


@pytest.mark.slow
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
    from maxpoolbert.training.optim import fused_policy

    cfg = composed(*overrides)
    got = fused_policy(cfg)
    assert got == ({} if fused is None else {"fused": fused})
    optimizer = instantiate(cfg.optimizer, **got)(params=[torch.nn.Parameter(torch.zeros(2))])
    assert bool(optimizer.defaults["fused"]) == bool(fused if fused is not None else cfg.optimizer.fused)
