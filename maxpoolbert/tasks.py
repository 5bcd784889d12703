"""GLUE task descriptions and the parser for the original GLUE TSV layout.

A task is data, not code: each ``configs/task/<name>.yaml`` instantiates one :class:`GlueTask`
that says where its files are, which columns hold the text and the label, how labels map to
class ids (the same ids as the hub's ``nyu-mll/glue``), and which metrics each dev split reports.
Adding a task means adding a YAML file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maxpoolbert.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One file of a task: ``file`` in the task's GLUE folder, ``hub_split`` on the hub.

    ``columns`` names the fields of a header-less file (CoLA train/dev); otherwise the first line
    is the header and columns are read by name. ``metrics`` maps result keys (``accuracy_m``) to
    metric names in :data:`maxpoolbert.metrics.METRICS` (``accuracy``).
    """

    file: str
    hub_split: str
    columns: list[str] | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    labelled: bool = True


@dataclass
class GlueTask:
    name: str
    dir: str
    hub_config: str
    text_columns: list[str]
    label_column: str
    hub_text_columns: list[str]
    num_labels: int
    train: Split
    eval: dict[str, Split]
    test: dict[str, Split] = field(default_factory=dict)
    label_values: list[str] | None = None
    label_names: list[str] | None = None  # class names where the files hold ids (default: label_values)
    skip_malformed: bool = False
    submission_names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = _as_split(self.train)
        self.eval = {k: _as_split(v) for k, v in self.eval.items()}
        self.test = {k: _as_split(v) for k, v in (self.test or {}).items()}
        self.text_columns = list(self.text_columns)
        self.hub_text_columns = list(self.hub_text_columns)
        if self.label_values is not None:
            self.label_values = [str(v) for v in self.label_values]

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

    def split(self, name: str) -> Split:
        if name == "train":
            return self.train
        splits = {**self.eval, **self.test}
        if name not in splits:
            raise UserError(f"task {self.name} has no split {name!r}; choose from train, {', '.join(splits)}")
        return splits[name]

    # ------------------------------------------------------------------ TSV parsing
    def parse_label(self, raw: str) -> float | int:
        raw = raw.strip()
        if self.is_regression:
            return float(raw)
        if self.label_values is not None:
            return self.label_values.index(raw)
        value = int(raw)
        if not 0 <= value < self.num_labels:
            raise ValueError(raw)
        return value

    def read_tsv(self, path: Path, split: Split, skip_malformed: bool | None = None) -> tuple[dict[str, list[Any]], int]:
        """Read one GLUE TSV into columns ``text_a``, ``text_b``, ``label``, ``idx``; also
        return the number of malformed rows skipped.

        Fields are split on tabs only (GLUE text contains unbalanced quotes, so no CSV quoting).
        Rows with the wrong number of fields are an error naming the file and line, unless the
        task sets ``skip_malformed`` (QQP's official train file has a few; the data module allows
        it for training files only), in which case they are skipped and counted in a warning. Unlabelled splits get label -1 (NaN for STS-B).
        """
        if not path.is_file():
            raise UserError(f"missing GLUE file {path} (task {self.name})",
                            allowed=f"a folder with {self.dir}/{split.file} (the original GLUE layout)")
        lines = read_text(path).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        start = 0
        if split.columns is not None:
            header = list(split.columns)
        else:
            if not lines:
                raise UserError(f"{path} is empty", allowed="a header line, then one line per row")
            header = lines[0].rstrip("\r").split("\t")
            start = 1
        needed = self.text_columns + ([self.label_column] if split.labelled else [])
        missing = [c for c in needed if c not in header]
        if missing:
            raise UserError(f"{path}: no column {', '.join(missing)} in header {header}",
                            allowed=f"a header with the columns {needed}")
        pos = [header.index(c) for c in self.text_columns]
        label_pos = header.index(self.label_column) if split.labelled else None
        if skip_malformed is None:
            skip_malformed = self.skip_malformed
        out: dict[str, list[Any]] = {"text_a": [], "text_b": [], "label": [], "idx": []}
        skipped = 0
        for lineno, line in enumerate(lines[start:], start=start + 1):
            fields = line.rstrip("\r").split("\t")
            if len(fields) != len(header):
                if skip_malformed:
                    skipped += 1
                    continue
                raise UserError(
                    f"{path}:{lineno}: malformed row, {len(fields)} fields where the header has {len(header)}",
                    allowed=f"{len(header)} tab-separated fields per row",
                )
            if label_pos is None:
                label: float | int = math.nan if self.is_regression else -1
            else:
                try:
                    label = self.parse_label(fields[label_pos])
                except ValueError:
                    if skip_malformed:
                        skipped += 1
                        continue
                    valid = self.label_values or ("a float" if self.is_regression else list(range(self.num_labels)))
                    raise UserError(f"{path}:{lineno}: bad label {fields[label_pos]!r}",
                                    allowed=f"expected {valid}") from None
            out["text_a"].append(fields[pos[0]])
            out["text_b"].append(fields[pos[1]] if len(pos) > 1 else None)
            out["label"].append(label)
            out["idx"].append(len(out["idx"]))
        if skipped:
            log.warning("%s: skipped %d malformed row(s)", path, skipped)
        return out, skipped


def read_text(path: Path) -> str:
    """A UTF-8 text file (a BOM is dropped, line ends are kept); any other encoding is refused
    with the first line that is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 (byte 0x{raw[err.start]:02x})",
                        allowed="UTF-8 text (convert it, e.g. iconv -f latin1 -t utf-8)") from None


def check_glue_dir(glue_dir: str | None) -> None:
    """``data.glue_dir`` is null (the hub) or an existing folder."""
    if glue_dir and not Path(glue_dir).expanduser().is_dir():
        raise UserError("not a folder", key="data.glue_dir", value=glue_dir,
                        allowed="a folder in the original GLUE layout (RTE/train.tsv, ...), or null for the hub")


def _as_split(value: Any) -> Split:
    if isinstance(value, Split):
        return value
    return Split(**dict(value))
