"""Task descriptions: a task is data, not code.

Each ``configs/task/<name>.yaml`` instantiates one :class:`Task`: which benchmark it belongs to
(``glue``, ``superglue``, ``custom``) and its display name, where its files are and in which
format (TSV with or without a header, CSV, JSONL: :mod:`maxpoolbert.tasks.readers`), the hub dataset it
comes from when no local folder is given, which fields hold the text and the label, how labels
map to class ids (the hub's ids), and which metrics each dev split reports. Adding a task means
adding a YAML file, in ``configs/task/`` or in a folder of your own on Hydra's search path
(README, "Your own task").

Where the files are: ``data_dir`` when the task sets it (a custom task's own folder), otherwise
the benchmark's folder setting (``data.glue_dir``, ``data.superglue_dir``) joined with ``dir``;
with neither, the hub (``hub_dataset``, ``hub_config``, each split's ``hub_split``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from maxpoolbert.core.errors import UserError
from maxpoolbert.core.metrics import METRICS, metrics_label
from maxpoolbert.core.values import Columns, PositiveInt, Text
from maxpoolbert.tasks.benchmarks import BENCHMARK_DIRS, BENCHMARKS
from maxpoolbert.tasks.readers import READERS, BadRecord

# The split name of the held-out rows of the training file (data.heldout_size): predicted and recorded
# like a dev split, read (its labels included) from the task's training file.
HELDOUT = "heldout"

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # maxpoolbert/tasks/task.py -> the repository's configs/
# The task class as a config names it (``_target_``); maxpoolbert.tasks.Task, GlueTask: its names in run folders of
# older versions (before the layers' sub-packages; before tasks beyond GLUE)
LEGACY_TASK_CLASS = "maxpoolbert.tasks.GlueTask"
TASK_CLASSES = ("maxpoolbert.tasks.task.Task", "maxpoolbert.tasks.Task", LEGACY_TASK_CLASS)


@dataclass(frozen=True)
class TaskInfo:
    """What a table needs to know about a task (stored in every run's record): its benchmark,
    display name, metric keys in display order and column position."""

    name: str
    display_name: str
    benchmark: str          # glue, superglue, custom, ...
    benchmark_name: str     # GLUE, SuperGLUE, Custom: names the benchmark's average column
    metrics: tuple[str, ...]  # metric keys in display order: ("f1", "accuracy")
    order: int = 100        # column position within its benchmark

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> TaskInfo:
        """From a stored record; ``ValueError`` naming what is wrong when it is not one."""
        try:
            metrics, order = data["metrics"], data["order"]
            if isinstance(metrics, str) or not metrics or not all(isinstance(m, str) for m in metrics):
                raise ValueError
            if isinstance(order, bool) or int(order) != order:
                raise ValueError
            return cls(name=str(name if name is not None else data["name"]), display_name=str(data["display_name"]),
                       benchmark=str(data["benchmark"]), benchmark_name=str(data["benchmark_name"]),
                       metrics=tuple(metrics), order=int(order))
        except (TypeError, ValueError, KeyError):
            raise ValueError("task_info needs display_name, benchmark, benchmark_name, a list of metric "
                             "names and an integer order") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "display_name": self.display_name, "benchmark": self.benchmark,
                "benchmark_name": self.benchmark_name, "metrics": list(self.metrics), "order": self.order}

    @property
    def label(self) -> str:
        """Short metric label for headers: ``F1/acc``, ``P/S``, ``m/mm``."""
        return metrics_label(self.metrics)

    @property
    def header(self) -> str:
        return f"{self.display_name} ({self.label})"

    @property
    def sort_key(self) -> tuple:
        """Column order: benchmark (glue, superglue, custom, then others alphabetically), then
        ``order``, then name."""
        known = list(BENCHMARKS)
        rank = known.index(self.benchmark) if self.benchmark in known else len(known)
        return (rank, self.benchmark, self.order, self.name)


@dataclass
class Split:
    """One file of a task: ``file`` in the task's folder, ``hub_split`` on the hub.

    ``fields`` names the fields of a TSV/CSV file without a header line (CoLA train/dev);
    otherwise the first line is the header and fields are read by name. ``metrics`` maps result
    keys (``accuracy_m``) to metric names in :data:`maxpoolbert.core.metrics.METRICS` (``accuracy``).
    A split whose file lies in another folder of the benchmark (GLUE's diagnostic set, predicted
    by MNLI runs) names it in ``dir`` and its hub configuration in ``hub_config``; an ``optional``
    test split is skipped, with a note, where its file is missing.
    """

    file: Text
    hub_split: Text | None = None
    fields: Annotated[list[Text], Field(min_length=1)] | None = None
    metrics: dict[str, Text] = field(default_factory=dict)
    labelled: bool = True
    dir: Text | None = None          # the split's folder inside the benchmark's folder (default: the task's)
    hub_config: Text | None = None   # default: the task's
    optional: bool = False


def label_text(value: Any) -> str:
    """A raw label as text: JSON's ``true`` is ``"true"`` (as in YAML), a string is stripped."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


@dataclass
class Task:
    """A task, as its YAML file describes it: these fields (types and bounds) are the task schema
    that :mod:`maxpoolbert.config.schema` checks a task config against, before anything loads."""

    name: Text
    display_name: Text
    benchmark: Literal[tuple(BENCHMARKS)]  # type: ignore[valid-type]
    num_labels: PositiveInt
    text_fields: Columns
    label_field: Text
    train: Split
    eval: Annotated[dict[str, Split], Field(min_length=1)]
    test: dict[str, Split] = field(default_factory=dict)
    format: Literal[tuple(READERS)] = "tsv"  # type: ignore[valid-type]
    dir: Text = ""                           # the task's folder inside its benchmark's folder
    data_dir: Text | None = None             # the folder holding the files (a custom task's own)
    hub_dataset: Text | None = None
    hub_config: Text | None = None
    hub_text_fields: Columns | None = None   # default: text_fields
    hub_label_field: Text = "label"
    label_values: list[Text | bool | int] | None = None   # the label as written in the files, in class-id order
    label_names: list[Text] | None = None    # class names where the files hold ids (default: label_values)
    skip_malformed: bool = False
    submission_names: dict[str, Text] = field(default_factory=dict)
    order: int = 100                         # column position in its benchmark's tables

    def __post_init__(self) -> None:
        self.train = _as_split(self.train)
        self.eval = {k: _as_split(v) for k, v in self.eval.items()}
        self.test = {k: _as_split(v) for k, v in (self.test or {}).items()}
        self.text_fields = list(self.text_fields)
        self.hub_text_fields = list(self.hub_text_fields or self.text_fields)
        if self.label_values is not None:
            self.label_values = [label_text(v) for v in self.label_values]
        unknown = [m for s in self.eval.values() for m in s.metrics.values() if m not in METRICS]
        if unknown:
            raise UserError(f"unknown metric {unknown[0]!r} (task {self.name})", key="task.eval.<split>.metrics",
                            value=unknown[0], allowed=f"one of {', '.join(METRICS)}")
        if self.format not in READERS:
            raise UserError(f"unknown format {self.format!r} (task {self.name})", key="task.format",
                            value=self.format, allowed=f"one of {', '.join(READERS)}")

    @property
    def class_names(self) -> list[str]:
        """One name per output (class id order; the score's name for regression)."""
        names = self.label_names or self.label_values or [f"LABEL_{i}" for i in range(self.num_labels)]
        return [str(n) for n in names]

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def metric_keys(self) -> list[str]:
        return [k for s in self.eval.values() for k in s.metrics]

    def info(self) -> TaskInfo:
        """What a table needs to know about the task; stored in every run's record."""
        return TaskInfo(self.name, self.display_name, self.benchmark, BENCHMARKS.get(self.benchmark, self.benchmark),
                        tuple(self.metric_keys), self.order)

    def split(self, name: str) -> Split:
        if name in ("train", HELDOUT):  # the held-out rows are rows of the training file
            return self.train
        splits = {**self.eval, **self.test}
        if name not in splits:
            raise UserError(f"task {self.name} has no split {name!r}; choose from train, {', '.join(splits)}")
        return splits[name]

    # ------------------------------------------------------------------ where the data is
    def folder(self, benchmark_dirs: Mapping[str, str | None], split: str | None = None) -> Path | None:
        """The folder holding this task's files, or the file of ``split`` when the split names its
        own ``dir`` (``None``: read from the hub)."""
        sub = self.split(split).dir if split else None
        if self.data_dir:
            return Path(self.data_dir).expanduser() / (sub or "")
        root = benchmark_dirs.get(self.benchmark)
        return Path(root).expanduser() / (sub if sub is not None else self.dir) if root else None

    def root(self, benchmark_dirs: Mapping[str, str | None]) -> str | None:
        """The value of the setting that points at this task's files (:meth:`source_key`)."""
        return self.data_dir or benchmark_dirs.get(self.benchmark) or None

    def source_key(self) -> str:
        """The setting that points at this task's folder (for error messages)."""
        return f"data.{BENCHMARK_DIRS[self.benchmark]}" if not self.data_dir and self.benchmark in BENCHMARK_DIRS \
            else "task.data_dir"

    def folder_hint(self) -> str:
        """How to point this task at local files, for messages."""
        key = self.source_key()
        if key == "task.data_dir":
            return f"the folder holding {self.train.file} ({key}=/path/to/it)"
        name = BENCHMARKS[self.benchmark]
        return f"a {name} folder in its official layout ({name.upper()}_DIR or {key}=/path/to/it)"

    def check_files(self, benchmark_dirs: Mapping[str, str | None], splits: list[str] | None = None) -> None:
        """Refuse, naming the setting's own value, a local folder that lacks this task's folder or
        the file of one of ``splits`` (default: train and the dev splits); the hub is not checked."""
        root = self.root(benchmark_dirs)
        key = self.source_key()
        for split in splits or ["train", *self.eval]:
            folder = self.folder(benchmark_dirs, split)
            if folder is None:
                continue
            spec = self.split(split)
            sub = spec.dir if spec.dir is not None else self.dir
            if sub and not self.data_dir and not folder.is_dir():
                raise UserError(f"no folder {sub}/ in it (task {self.name})", key=key, value=root,
                                allowed=self.folder_hint())
            if not (folder / spec.file).is_file():
                raise UserError(f"missing data file {folder / spec.file} (task {self.name})", key=key, value=root,
                                allowed=f"a folder with {spec.file}" + (f" in {sub}/" if sub else ""))

    # ------------------------------------------------------------------ parsing
    def parse_label(self, raw: Any) -> float | int:
        text = label_text(raw)
        if self.is_regression:
            return float(text)
        if self.label_values is not None:
            return self.label_values.index(text)
        value = int(text)
        if not 0 <= value < self.num_labels:
            raise ValueError(text)
        return value

    def read_file(self, path: Path, split: Split, skip_malformed: bool | None = None
                  ) -> tuple[dict[str, list[Any]], int]:
        """Read one data file into columns ``text_a``, ``text_b``, ``label``, ``idx`` (file
        order); also return the number of malformed rows skipped.

        A row that is malformed (wrong number of fields, not JSON, a field missing) or has a
        label outside the task's label values is an error naming the file and line, unless the
        task sets ``skip_malformed`` (QQP's official train file has a few; the data module allows
        it for training files only), in which case it is skipped and counted in a warning.
        Unlabelled splits get label -1 (NaN for regression).
        """
        if not path.is_file():
            raise UserError(f"missing data file {path} (task {self.name})",
                            allowed=f"a folder with {split.file}" + (f" in {self.dir}/" if self.dir else ""))
        header, records = READERS[self.format](path, split.fields)
        needed = self.text_fields + ([self.label_field] if split.labelled else [])
        if header is not None:
            missing = [c for c in needed if c not in header]
            if missing:
                raise UserError(f"{path}: no column {', '.join(missing)} in header {header}",
                                allowed=f"a header with the columns {needed}")
        if skip_malformed is None:
            skip_malformed = self.skip_malformed
        out: dict[str, list[Any]] = {"text_a": [], "text_b": [], "label": [], "idx": []}
        skipped = 0
        for lineno, record in records:
            problem = self._check_record(record, needed)
            label: float | int = math.nan if self.is_regression else -1
            if problem is None and split.labelled:
                try:
                    label = self.parse_label(record[self.label_field])
                except ValueError:
                    valid = self.label_values or ("a number" if self.is_regression else list(range(self.num_labels)))
                    problem = f"bad label {label_text(record[self.label_field])!r}; expected one of {valid}" \
                        if not self.is_regression else f"bad label {record[self.label_field]!r}; expected a number"
            if problem is not None:
                if skip_malformed:
                    skipped += 1
                    continue
                raise UserError(f"{path}:{lineno}: {problem}")
            texts = [record[f] for f in self.text_fields]
            out["text_a"].append(str(texts[0]))
            out["text_b"].append(str(texts[1]) if len(texts) > 1 else None)
            out["label"].append(label)
            out["idx"].append(len(out["idx"]))
        if skipped:
            log.warning("%s: skipped %d malformed row(s)", path, skipped)
        return out, skipped

    def _check_record(self, record: dict[str, Any] | BadRecord, needed: list[str]) -> str | None:
        if isinstance(record, BadRecord):
            return record.problem
        missing = [f for f in needed if f not in record]
        if missing:
            return f"no field {', '.join(map(repr, missing))} (fields: {', '.join(record) or 'none'})"
        empty = [f for f in self.text_fields if not isinstance(record[f], str)]
        if empty:
            return f"field {empty[0]!r} is {type(record[empty[0]]).__name__}, not text"
        return None


def task_info(name: str, configs: Path = CONFIGS) -> TaskInfo | None:
    """:meth:`Task.info` of the task ``configs/task/<name>.yaml``, for runs recorded before the
    record carried it (``None`` when no such task config exists)."""
    from omegaconf import OmegaConf

    path = configs / "task" / f"{name}.yaml"
    if not path.is_file():
        return None
    return config_info(OmegaConf.to_container(OmegaConf.load(path), resolve=False), name)


def config_info(cfg: Mapping[str, Any], name: str | None = None) -> TaskInfo:
    """:meth:`Task.info` of a task config as a plain dict (a YAML file, a run's stored config)."""
    name = cfg.get("name", name)
    benchmark = cfg.get("benchmark", "custom")
    metrics = [k for split in (cfg.get("eval") or {}).values() for k in (split.get("metrics") or {})]
    return TaskInfo(str(name), str(cfg.get("display_name", name)), str(benchmark),
                    BENCHMARKS.get(benchmark, benchmark), tuple(metrics), int(cfg.get("order", 100)))


# Field names of task configs stored by runs made before tasks beyond GLUE (their run folders
# still predict, export and relaunch): old name -> new name.
_RENAMED = {"text_columns": "text_fields", "label_column": "label_field", "hub_text_columns": "hub_text_fields"}


def upgrade(node: dict[str, Any]) -> dict[str, Any]:
    """A task config as stored by an older run, in today's fields (a current one is unchanged)."""
    node = {_RENAMED.get(k, k): v for k, v in node.items()}
    if node.get("_target_") == LEGACY_TASK_CLASS and "benchmark" not in node:
        info = task_info(str(node.get("name")))
        node.setdefault("display_name", info.display_name if info else node.get("name"))
        node["benchmark"] = "glue"
        node.setdefault("order", info.order if info else 100)
        node.setdefault("hub_dataset", "nyu-mll/glue")
    for split_group in ("eval", "test"):
        for split in (node.get(split_group) or {}).values():
            if "columns" in split:
                split["fields"] = split.pop("columns")
    if "columns" in (node.get("train") or {}):
        node["train"]["fields"] = node["train"].pop("columns")
    return node


def from_config(node: Any, source: str = "the task config") -> Task:
    """The :class:`Task` a task config describes (older stored configs upgraded first), built
    directly: its ``_target_`` must name the task class (:data:`TASK_CLASSES`), and nothing in it
    is instantiated (a stored config is data: :mod:`maxpoolbert.config.targets`). A config that does not
    describe a task is one line naming ``source``."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    fields = upgrade(plain)
    target = fields.pop("_target_", TASK_CLASSES[0])
    if target not in TASK_CLASSES:
        raise UserError(f"in {source}: not the task class (a task config builds a task and nothing else)",
                        key="task._target_", value=target, allowed=TASK_CLASSES[0])
    try:
        return Task(**fields)
    except UserError as err:
        raise UserError(f"{err} (in {source})") from None
    except (TypeError, ValueError, AttributeError) as err:  # unknown or missing fields, wrong shapes
        raise UserError(f"{source}: not a task ({str(err).splitlines()[0]})",
                        allowed="the fields of maxpoolbert.tasks.task.Task (README, \"Your own task\")") from None


def _as_split(value: Any) -> Split:
    if isinstance(value, Split):
        return value
    return Split(**dict(value))


GlueTask = Task  # the class's name before tasks beyond GLUE: run folders made then store it
