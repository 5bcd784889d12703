"""The config's schema: the type, range and allowed values of every setting this project defines.

``check(cfg)`` validates a composed Hydra config against :class:`Config` (pydantic models, one per
config group or section) and raises a :class:`~maxpoolbert.core.errors.UserError` for the first bad
setting: ``seed=abc: not an integer; an integer from 0 to 4294967295``. The "allowed" part is
written from the field's own type and bounds, so the models below are the single source of truth.
It runs right after Hydra composes the config (``maxpoolbert.launch.callbacks.CheckConfig``), before
torch, transformers or lightning are imported, and again at the start of each job (a sweep's
per-job values). :func:`check_encoder` holds the rules that need the encoder's config.

The project's own sections (``data``, ``eval``, ``head``, ``scheduler``, ``checkpoint``, ``speed``)
and the task list every key they take: a key they do not know is a typo, refused with the closest
field ("did you mean"). Elsewhere keys this project does not list pass through to the code that uses
them (Lightning flags, which Hydra's struct mode already checks; an experiment's top-level helper keys);
a pooling's options are its class's own (:func:`check_pooling_options`). Nothing is converted: the
config the run uses is the config Hydra composed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from maxpoolbert.core import signatures
from maxpoolbert.core.errors import UserError, show
from maxpoolbert.core.values import (  # the value types, shared with the task dataclasses
    Fraction,
    NoLimit,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Text,
)
from maxpoolbert.tasks import task as tasks

# The default of a field the config may leave out: the code that uses it has the default (the optimizer,
# the encoder's config, lightning.Trainer's signature). Never a value of its own; an explicit null is
# still checked against the field's type. The only default a field here has: a setting's default value
# is declared once, in the YAML (configs/config.yaml sets every key of its own sections, whose fields
# are therefore required here; tests/test_validation.py checks both rules).
OMITTED: Any = None
MISSING = "???"  # Hydra's value of a setting that must be given
# speed.threads: at most this many per CPU of the machine (at least MIN_THREAD_LIMIT in all: a sweep is
# checked where it starts, a login node may have fewer CPUs than the node that runs it)
THREADS_PER_CPU, MIN_THREAD_LIMIT = 4, 256


class Section(BaseModel):
    """Strict types (``abc`` is not an integer, ``1.5`` is not one either), unknown keys allowed."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class Closed(Section):
    """A section of this project's own: every key it takes is listed, another one is a typo."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class Target(Section):
    """Anything Hydra instantiates."""

    target: Text = Field(alias="_target_")


# ------------------------------------------------------------------------------- groups
class Data(Closed):
    glue_dir: Text | None
    superglue_dir: Text | None
    max_length: PositiveInt
    batch_size: PositiveInt
    eval_batch_size: PositiveInt
    train_size: PositiveInt | None
    subset_seed: NonNegativeInt
    heldout_size: PositiveInt | None
    pad_to_max_length: bool
    pad_to_multiple_of: PositiveInt | None
    group_by_length: bool
    num_workers: NonNegativeInt
    pin_memory: bool
    cache_dir: Text | None


class Head(Closed):
    use_pooler: bool
    dropout: Probability | None


class Scheduler(Closed):
    warmup_ratio: Fraction


class Checkpoint(Closed):
    every_n_epochs: NonNegativeInt  # 0: no resume checkpoint
    keep: bool


class Speed(Closed):
    compile: bool
    compile_backend: Text
    compile_dynamic: bool | None
    compile_mode: Text | None
    tf32: bool
    threads: PositiveInt | None


class Optimizer(Target):
    partial: bool = Field(OMITTED, alias="_partial_")
    lr: PositiveFloat = OMITTED
    weight_decay: NonNegativeFloat = OMITTED
    betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = OMITTED
    eps: PositiveFloat = OMITTED
    fused: bool | None = OMITTED
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = OMITTED  # layer-wise lr decay factor


class PoolingModule(Target):
    """A pooling strategy: its options are its class's own (:func:`check_pooling_options`)."""


class Pooling(Section):
    name: Text
    module: PoolingModule


class Encoder(Target):
    """``model.encoder``: a pretrained checkpoint, or the fields of a random BERT (``model=tiny``)."""

    name_or_path: Text | None = OMITTED
    vocab_size: PositiveInt = OMITTED
    hidden_size: PositiveInt = OMITTED
    num_hidden_layers: PositiveInt = OMITTED
    num_attention_heads: PositiveInt = OMITTED
    intermediate_size: PositiveInt = OMITTED
    max_position_embeddings: PositiveInt = OMITTED


class Model(Section):
    name: Text
    name_or_path: Text | None = OMITTED
    reinit_layers: NonNegativeInt = OMITTED  # at most the encoder's layers: checked when it is built
    encoder: Encoder
    tokenizer: Target


class TaskSection(BaseModel):
    """A task YAML is data someone wrote by hand: a key this project does not know is a typo."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


def model_of(cls: type, base: type[BaseModel] = TaskSection, **extra: Any) -> type[BaseModel]:
    """A pydantic model with the fields of the dataclass ``cls`` (their types, bounds and
    defaults), nested dataclasses turned into models too: the dataclass stays the one declaration
    of its fields. ``extra``: more fields, as ``create_model`` takes them."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else ...)
        fields[f.name] = (_modelled(hints[f.name], base), default)
    return create_model(cls.__name__, __base__=base, **extra, **fields)


def _modelled(tp: Any, base: type[BaseModel]) -> Any:
    """``tp`` with every dataclass in it replaced by its :func:`model_of`."""
    if dataclasses.is_dataclass(tp):
        return model_of(tp, base)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return Annotated[(_modelled(args[0], base), *args[1:])]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_modelled(a, base) for a in args)]  # noqa: UP007
    if origin in (list, dict):
        return origin[tuple(_modelled(a, base) for a in args)]
    return tp


# The task schema is the task class's own fields (maxpoolbert.tasks.task.Task), plus Hydra's _target_.
Task = model_of(tasks.Task, target=(Text, Field(alias="_target_")))


Precision = Literal[64, 32, 16, "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true",
                    "16-mixed", "bf16-mixed", "transformer-engine", "transformer-engine-float16"]
Batches = NonNegativeInt | Fraction  # an int counts batches, a float is a fraction of them


class Trainer(Target):
    """The ``lightning.Trainer`` flags with a checkable type or range; other flags pass through."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = OMITTED
    devices: PositiveInt | NoLimit | list[NonNegativeInt] | str = OMITTED  # "auto", "0,1"
    num_nodes: PositiveInt = OMITTED
    precision: Precision | None = OMITTED
    fast_dev_run: bool | NonNegativeInt = OMITTED
    max_epochs: PositiveInt | NoLimit | None = OMITTED
    min_epochs: NonNegativeInt | None = OMITTED
    max_steps: PositiveInt | NoLimit = OMITTED
    min_steps: NonNegativeInt | None = OMITTED
    limit_train_batches: Batches | None = OMITTED
    limit_val_batches: Batches | None = OMITTED
    limit_test_batches: Batches | None = OMITTED
    limit_predict_batches: Batches | None = OMITTED
    overfit_batches: Batches = OMITTED
    val_check_interval: PositiveInt | Annotated[float, Field(gt=0, le=1)] | None = OMITTED
    check_val_every_n_epoch: PositiveInt | None = OMITTED
    num_sanity_val_steps: Annotated[int, Field(ge=-1)] | None = OMITTED
    log_every_n_steps: PositiveInt | None = OMITTED
    enable_checkpointing: bool | None = OMITTED
    enable_progress_bar: bool | None = OMITTED
    enable_model_summary: bool | None = OMITTED
    accumulate_grad_batches: PositiveInt = OMITTED
    gradient_clip_val: NonNegativeFloat | None = OMITTED
    gradient_clip_algorithm: Literal["norm", "value"] | None = OMITTED
    deterministic: bool | Literal["warn"] | None = OMITTED
    benchmark: bool | None = OMITTED
    inference_mode: bool = OMITTED
    use_distributed_sampler: bool = OMITTED
    detect_anomaly: bool = OMITTED
    barebones: bool = OMITTED
    sync_batchnorm: bool = OMITTED
    reload_dataloaders_every_n_epochs: NonNegativeInt = OMITTED
    default_root_dir: Text | None = OMITTED
    enable_autolog_hparams: bool = OMITTED


class Eval(Closed):
    select: Literal["last", "best"]
    per_epoch: PositiveInt
    early_stopping: PositiveInt | None  # patience, in evaluations


class Config(Section):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy's and Lightning's seeding accept
    group: Text | None
    data: Data
    head: Head
    scheduler: Scheduler
    eval: Eval
    checkpoint: Checkpoint
    speed: Speed
    save_model: bool
    skip_finished: bool
    progress_every_s: PositiveFloat | None
    task: Task
    model: Model
    pooling: Pooling
    optimizer: Optimizer
    trainer: Trainer
    logger: Target


# ------------------------------------------------------------------------------- checking
def check(cfg: DictConfig, swept: Collection[str] = (), hydra: dict[str, Any] | None = None) -> None:
    """Raise a UserError naming the first bad setting of ``cfg`` (Hydra's ``hydra`` node aside).
    ``swept``: keys a sweep sets in each job (a value missing here is not missing there).
    ``hydra``: Hydra's node of the job, plain (:meth:`RunContext.hydra_plain`) when ``cfg`` has none:
    a bad value of a task YAML names its file."""
    values = plain(cfg)
    hydra = values.pop("hydra", None) or hydra
    missing = [k for k in missing_keys(values) if k not in swept]
    if missing:
        raise missing_error(missing[0], values)
    try:
        Config.model_validate(values)
    except ValidationError as err:
        user = _user_error(err, values)
        if user.key and user.key.split(".")[0] == "task":  # a hand-written task YAML: name the file
            user = UserError(f"{user.problem} (in {task_file(hydra)})", key=user.key, value=user.value,
                             allowed=user.allowed)
        raise user from None
    check_pooling_options(values["pooling"]["module"])
    _check_combinations(values)


def additions(args: list[str], configs: Path = tasks.CONFIGS) -> list[str]:
    """The command line with each plain override of a key the project's own sections do not have
    (``data.batchsize=8``, ``pooling.module.num_head=2``) turned into an addition (``+data.batchsize=8``),
    so that :func:`check` refuses it in one line with the closest name rather than Hydra in six.
    A pooling option counts as known when a pooling named by the command line's last ``pooling=``
    (else any pooling) lists it. Everything else is left as it is: what Hydra accepts is unchanged."""
    sections = {name: [f.alias or k for k, f in _unwrap(field.annotation).model_fields.items()]
                for name, field in Config.model_fields.items()
                if isinstance(_unwrap(field.annotation), type) and issubclass(_unwrap(field.annotation), Closed)}
    sections["task"] = [f.alias or k for k, f in Task.model_fields.items()]
    named = [a.partition("=")[2] for a in args if a.startswith("pooling=")][-1:]  # the last one wins
    files = ([configs / "pooling" / f"{name}.yaml" for name in named[0].split(",")] if named
             else sorted((configs / "pooling").glob("*.yaml")))
    options: set[str] = set()
    for file in files:
        if file.is_file():
            module = (OmegaConf.to_container(OmegaConf.load(file)) or {}).get("module") or {}
            options.update(module)
    out = []
    for arg in args:
        key, eq, _ = arg.partition("=")
        parts = key.split(".")
        unknown = (eq and not key.startswith(("+", "~", "-")) and "@" not in key and len(parts) >= 2 and (
            (parts[0] in sections and len(parts) == 2 and parts[1] not in sections[parts[0]])
            or (parts[:2] == ["pooling", "module"] and len(parts) == 3 and options and parts[2] not in options)))
        out.append("+" + arg if unknown else arg)
    return out


# Hydra's options that take the next argument as their value; those that change where configs
# come from (a primary config elsewhere) leave the group names to Hydra.
_VALUE_OPTIONS = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-p", "--package",
                  "-c", "--cfg", "-i", "--info", "--experimental-rerun"}


def check_command_line(args: list[str], configs: Path = tasks.CONFIGS) -> None:
    """Refuse, before Hydra composes anything, a config-group option that no config folder on the
    search path holds (``task=rtee``, ``hydra/launcher=jobib``) and a ``trainer.<flag>`` (with or
    without ``+``) that the installed ``lightning.Trainer`` does not take: one line with the
    closest name and the allowed ones. The search path is Hydra's own (this project's configs,
    plugins, ``hydra.searchpath=`` and ``--config-dir`` of the command line). What cannot be told
    here (a glob, a range, a command line Hydra cannot parse) is left to Hydra."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from maxpoolbert.config.lightning_flags import trainer_flags

    overrides, extra_dirs, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            option, eq, value = arg.partition("=")
            if option in ("-cp", "--config-path"):
                return  # another primary config: its groups are Hydra's to check
            if option in _VALUE_OPTIONS and not eq:
                value, i = (args[i + 1] if i + 1 < len(args) else ""), i + 1
            if option in ("-cd", "--config-dir") and value:
                extra_dirs.append(f"file://{Path(value).expanduser().absolute()}")
        else:
            overrides.append(arg)
        i += 1
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # Hydra says what is wrong with it
    search = create_config_search_path(str(configs))
    for override in parsed:
        if override.key_or_group == "hydra.searchpath" and isinstance(override.value(), list):
            extra_dirs += [str(d) for d in override.value()]
    for path in extra_dirs:
        search.append("command line", path)
    repo = ConfigRepository(search)
    flags = trainer_flags()
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or override.package is not None:
            continue
        if repo.group_exists(key) and not repo.config_exists(key):
            _check_group(key, override, repo.get_group_options(key))
        parts = key.split(".")
        if flags and parts[0] == "trainer" and len(parts) == 2 and parts[1] not in flags and parts[1] != "_target_":
            close = difflib.get_close_matches(parts[1], flags, n=1)
            raise UserError("not a flag of lightning.Trainer" + (f" (did you mean trainer.{close[0]}?)" if close else ""),
                            key=key, value=override.get_value_element_as_str() if not override.is_sweep_override()
                            else override.input_line.partition("=")[2], allowed="its flags are " + ", ".join(flags))


def _check_group(group: str, override: Any, options: list[str]) -> None:
    """One group's option(s) on the command line (a plain value or a list of them) against the
    configs the group holds."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        values = value.list
    elif override.is_sweep_override():
        return  # glob, range, interval: Hydra expands them
    else:
        values = [value]
    for name in values:
        if name is None or not isinstance(name, str | int | float) or str(name) in options:
            continue
        close = difflib.get_close_matches(str(name), options, n=1)
        raise UserError(f"no {group} of that name" + (f" (did you mean {close[0]}?)" if close else ""),
                        key=group, value=name, allowed="one of " + ", ".join(options))


def missing_keys(values: Any, prefix: str = "") -> list[str]:
    """The keys of ``values`` (:func:`plain`) whose value is Hydra's "must be set" ``???``."""
    if isinstance(values, dict):
        return [k for key, v in values.items() for k in missing_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if values == MISSING else []


def missing_error(key: str, values: dict[str, Any]) -> UserError:
    if key == "model.name_or_path":
        name = values.get("model", {}).get("name", "this model")
        return UserError(f"model={name} needs a checkpoint", key=key, value=MISSING,
                         allowed="a hub id (FacebookAI/roberta-base) or a folder written by save_pretrained")
    return UserError("not set: the config has no default for it", key=key, value=MISSING,
                     allowed=f"a value on the command line ({key}=...)")


def check_pooling_options(module: dict[str, Any]) -> None:
    """The options of ``pooling.module`` against the options model of the class it names
    (:func:`maxpoolbert.core.signatures.options_model`, read from its source): a name it does not take is
    refused with the closest one, a value is checked against the option's annotation. A class whose
    source cannot be found (not importable yet) is left to its own constructor."""
    target = str(module["_target_"])
    model = signatures.options_model(target)
    if model is None:
        return
    declared = list(model.model_fields)
    given = {k: v for k, v in module.items() if k != "_target_"}
    name = target.rpartition(".")[2]
    for key in given:
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            raise UserError(f"unknown option of {name}" + (f" (did you mean {close[0]}?)" if close else ""),
                            key=f"pooling.module.{key}", value=given[key],
                            allowed=f"its options are {', '.join(declared)}" if declared else f"{name} has no options")
    try:
        model.model_validate(given)
    except ValidationError as err:
        user = _user_error(err, given, model)
        raise UserError(user.problem, key=f"pooling.module.{user.key}", value=user.value,
                        allowed=user.allowed) from None


def task_file(hydra: dict | None = None) -> str:
    """The YAML file the task config came from: ``<config source>/task/<choice>.yaml``, from
    Hydra's node of the job (plain, :meth:`RunContext.hydra_plain`); without it, "the task config"."""
    if hydra is None:
        return "the task config"
    runtime = hydra.get("runtime") or {}
    choice = (runtime.get("choices") or {}).get("task")
    for source in runtime.get("config_sources") or []:
        if source.get("provider") in ("hydra", "schema") or not choice:
            continue
        path, scheme = source.get("path", ""), source.get("schema")
        if scheme == "file" and Path(path, "task", f"{choice}.yaml").is_file():
            return str(Path(path, "task", f"{choice}.yaml"))
        if scheme == "pkg":
            return f"pkg://{path}/task/{choice}.yaml"
    return f"task/{choice}.yaml" if choice else "the task config"


def _check_combinations(v: dict[str, Any]) -> None:
    """Rules between settings, each valid alone."""
    task, trainer, opts = v["task"], v["trainer"], v["pooling"]["module"]
    if task.get("label_values") is not None and len(task["label_values"]) != task["num_labels"]:
        raise UserError(f"{len(task['label_values'])} label values for {task['num_labels']} labels",
                        key="task.label_values", value=task["label_values"],
                        allowed=f"null or a list of task.num_labels={task['num_labels']} names")
    if trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) == -1:
        raise UserError("no limit on epochs and none on steps (trainer.max_steps=-1): the run never ends",
                        key="trainer.max_epochs", value=-1,
                        allowed="an integer at least 1, or -1 with trainer.max_steps at least 1")
    if trainer.get("limit_train_batches") == 0:
        raise UserError("no training batches: the run would train 0 steps and call itself finished",
                        key="trainer.limit_train_batches", value=trainer["limit_train_batches"],
                        allowed="a fraction in (0, 1], a number of batches at least 1, or null; "
                                "for a short run: trainer.max_steps=N")
    threads, limit = v["speed"].get("threads"), thread_limit()
    if threads is not None and threads > limit:
        raise UserError(f"more threads than {THREADS_PER_CPU} per CPU of this machine ({os.cpu_count()} CPUs)",
                        key="speed.threads", value=threads, allowed=f"an integer from 1 to {limit}, or null "
                                                                    "(this job's share of the machine)")
    if opts.get("max_positions") is not None and opts["max_positions"] < v["data"]["max_length"]:
        raise UserError(f"fewer positions than data.max_length={v['data']['max_length']}",
                        key="pooling.module.max_positions", value=opts["max_positions"],
                        allowed=f"null (the encoder's) or an integer at least {v['data']['max_length']}")
    encoder = v["model"]["encoder"]
    heads, hidden = encoder.get("num_attention_heads"), encoder.get("hidden_size")
    if heads and hidden and hidden % heads:
        raise UserError(f"does not divide model.encoder.hidden_size={hidden}",
                        key="model.encoder.num_attention_heads", value=heads, allowed=_divisors(hidden))


def thread_limit() -> int:
    """The most threads ``speed.threads`` may ask for on this machine."""
    return max(MIN_THREAD_LIMIT, THREADS_PER_CPU * (os.cpu_count() or 1))


def check_encoder(cfg: DictConfig, encoder_config: Any, tokenizer: Any = None,
                  explicit: frozenset[str] | set[str] = frozenset()) -> None:
    """Rules that need the encoder: the pooling's ``num_heads`` must divide its hidden size, ``k``
    cannot exceed its layers, ``data.max_length`` its positions.

    A preset's ``k`` (the paper's 3) shrinks to a smaller encoder's layer count (a 2-layer test
    model); a ``k`` in ``explicit`` (set on the command line) that is too large is refused."""
    hidden, layers = encoder_config.hidden_size, encoder_config.num_hidden_layers
    opts = cfg.pooling.module
    heads = opts.get("num_heads")
    if heads and hidden % heads:
        raise UserError(f"does not divide the encoder's hidden size {hidden}", key="pooling.module.num_heads",
                        value=heads, allowed=_divisors(hidden))
    k = opts.get("k")
    if k is not None and k > layers and "pooling.module.k" in explicit:
        raise UserError(f"more than the encoder's {layers} layers", key="pooling.module.k", value=k,
                        allowed=f"an integer from 1 to {layers}")
    limit = position_limit(encoder_config, tokenizer)
    least = shortest_input(cfg, tokenizer)
    if least is not None and cfg.data.max_length < least:
        texts = len(cfg.task.text_fields)
        raise UserError(f"too short for task {cfg.task.name}: {least - texts} special tokens "
                        f"{'of a text pair' if texts == 2 else 'of a text'} and one token of each text need "
                        f"{least} (the tokenizer does not truncate below that: its rows come out longer)",
                        key="data.max_length", value=cfg.data.max_length,
                        allowed=f"an integer from {least} to {limit or 'the encoder limit'}")
    if limit is not None and cfg.data.max_length > limit:
        raise UserError(f"longer than the {limit} positions of model {cfg.model.name}", key="data.max_length",
                        value=cfg.data.max_length, allowed=f"an integer from 1 to {limit}")


def shortest_input(cfg: DictConfig, tokenizer: Any) -> int | None:
    """The smallest ``data.max_length`` the tokenizer can apply to the task's input: its special
    tokens (of a pair, for a task of two texts) and one token of each text. None: unknown."""
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    if count is None:
        return None
    texts = len(cfg.task.text_fields)
    return int(count(pair=texts == 2)) + texts


def position_limit(encoder_config: Any, tokenizer: Any = None) -> int | None:
    """The longest input the encoder takes: its position embeddings, or its tokenizer's limit
    when smaller (RoBERTa has 514 positions for 512 tokens)."""
    limits = [getattr(encoder_config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]  # unknown: a huge sentinel
    return min(limits) if limits else None


def plain(node: Any) -> Any:
    """``node`` as plain dicts and lists, interpolations resolved; one that cannot be resolved yet
    (``${hydra:runtime.output_dir}`` before the run starts) is kept as its text."""
    if isinstance(node, DictConfig):
        return {str(k): plain(_child(node, k)) for k in node.keys()}
    if isinstance(node, ListConfig):
        return [plain(_child(node, i)) for i in range(len(node))]
    return node


def _child(node: DictConfig | ListConfig, key: Any) -> Any:
    try:
        return node[key]
    except OmegaConfBaseException:
        return OmegaConf.to_container(node, resolve=False)[key]


# ------------------------------------------------------------------------------- messages
_WRONG = {"int": "not an integer", "float": "not a number", "bool": "not true or false",
          "string": "not a string", "list": "not a list", "tuple": "not a list", "dict": "not a mapping",
          "model": "not a mapping", "literal": "not one of the choices", "missing": "missing",
          "too_short": "too few entries", "too_long": "too many entries",
          "finite_number": "not a finite number", "greater_than": "too small", "greater_than_equal": "too small",
          "less_than": "too large", "less_than_equal": "too large"}
_RANGE = ("greater_than", "less_than")


def _user_error(err: ValidationError, values: dict[str, Any], model: type[BaseModel] | None = None) -> UserError:
    """The first bad setting: its key, its value, what is wrong and what its field allows
    (``model``: the model ``values`` were checked against, default :class:`Config`)."""
    model = model or Config
    # A misspelt key is also a missing one: the misspelling is the cause, so it is named first.
    first = next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])
    path, value = _setting(first["loc"], values)
    # A union reports one error per member; a range error means the value had the right type.
    errors = [e for e in err.errors() if _setting(e["loc"], values)[0] == path]
    kinds = [e["type"] for e in errors]
    kind = next((k for k in kinds if k.startswith(_RANGE)), kinds[0])
    wrong = next((text for name, text in _WRONG.items() if kind.startswith(name)), errors[0]["msg"].lower())
    if kind == "extra_forbidden":
        fields = _fields_at(model, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), fields, n=1)
        return UserError("unknown field" + (f" (did you mean {close[0]}?)" if close else ""),
                         key=".".join(map(str, path)), value=value, allowed="the fields are " + ", ".join(fields))
    return UserError(wrong, key=".".join(map(str, path)), value=value, allowed=describe_field(model, path))


def _fields_at(model: type[BaseModel], path: list) -> list[str]:
    """The field names of the section at ``path`` (a split of a task: its Split fields)."""
    tp: Any = model
    for part in path:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for name, f in tp.model_fields.items() if part in (name, f.alias)), None)
            tp = field.annotation if field is not None else None
        elif typing.get_origin(_unwrap(tp)) is dict:
            tp = typing.get_args(_unwrap(tp))[1]
    tp = _unwrap(tp)
    if typing.get_origin(tp) is dict:
        tp = _unwrap(typing.get_args(tp)[1])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _setting(loc: tuple, values: Any) -> tuple[list, Any]:
    """The config key a pydantic error location points at (a list is one setting) and its value."""
    path: list = []
    for i, part in enumerate(loc):
        if isinstance(values, dict) and part not in values and i == len(loc) - 1:
            return [*path, part], None  # a missing key
        if not isinstance(values, dict) or part not in values:
            break
        path.append(part)
        values = values[part]
    return path or list(loc[:1]), values


def describe_field(model: type[BaseModel], path: list) -> str:
    """What the field at ``path`` of ``model`` accepts, in words."""
    tp: Any = model
    for part in path:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for name, f in tp.model_fields.items() if part in (name, f.alias)), None)
            if field is None:
                return "a value this project knows"
            tp = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
    return describe(tp)


def _unwrap(tp: Any) -> Any:
    """The model inside ``Annotated[...]`` or ``X | None``."""
    if typing.get_origin(tp) is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(inner[0]) if len(inner) == 1 else tp
    return tp


def describe(tp: Any) -> str:
    """``Annotated[int, Field(ge=1)] | None`` -> ``an integer at least 1, or null``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        bounds, finite = {}, False
        for meta in args[1:]:
            for m in getattr(meta, "metadata", [meta]):
                bounds.update({k: getattr(m, k) for k in _BOUNDS if getattr(m, k, None) is not None})
                finite = finite or getattr(m, "allow_inf_nan", None) is False
        base = describe(args[0])
        return _bounded(base.replace("a number", "a finite number") if finite else base, bounds)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return ", or ".join(parts)
    if origin is Literal:
        names = list(dict.fromkeys(show(a) for a in args))  # 16 and "16" read the same
        return names[0] if len(names) == 1 else "one of " + ", ".join(names)
    if origin is list:
        return f"a list, each {describe(args[0])}"
    if origin is dict:
        return f"a mapping to {describe(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


_BOUNDS = ("ge", "gt", "le", "lt", "min_length", "max_length")


def _bounded(base: str, b: dict[str, Any]) -> str:
    """``an integer`` with ``{"ge": 0, "le": 9}`` -> ``an integer from 0 to 9``."""
    if "min_length" in b or "max_length" in b:
        lo, hi = b.get("min_length", 0), b.get("max_length")
        size = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
        return base.replace("a list,", f"a list of {size} values,", 1)
    if "ge" in b and "le" in b:
        return f"{base} from {b['ge']} to {b['le']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return " ".join([base, " and ".join(f"{words[k]} {v}" for k, v in b.items())]) if b else base


def _divisors(n: int) -> str:
    return "a divisor of " + f"{n}: " + ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
