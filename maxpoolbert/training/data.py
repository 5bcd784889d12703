"""Task data: reading (a local folder in the task's format, or the hub), tokenising with an on-disk cache, batching.

Speed matters more than anything else here on a CPU: batches are padded dynamically to their
longest row, and training batches are drawn from length-grouped, shuffled buckets (the
``LengthGroupedSampler`` idea), so almost no FLOPs go to padding. ``pad_to_max_length=true``
restores run_glue's fixed 128-token batches for comparison.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from maxpoolbert.core.errors import UserError
from maxpoolbert.tasks.benchmarks import benchmark_dirs, check_data_dir
from maxpoolbert.tasks.task import HELDOUT, Task

log = logging.getLogger(__name__)

CACHE_VERSION = 4  # bump when the tokenised format changes (4: padding always on the right)


def load_split(task: Task, split: str, dirs: dict[str, str | None]) -> datasets.Dataset:
    """Rows of one split as a ``datasets.Dataset`` with ``text_a text_b label idx`` (file order),
    from the split's folder under its benchmark's folder in ``dirs`` (see :meth:`Task.folder`), or
    from the hub when there is none."""
    spec = task.split(split)
    folder = task.folder(dirs, split)
    if folder:
        check_data_dir(task.source_key(), task.root(dirs))
        # Malformed rows may be skipped (QQP) in training data only: never drop a row to evaluate.
        try:
            columns, _ = task.read_file(folder / spec.file, spec,
                                        skip_malformed=task.skip_malformed and split == "train")
        except UserError as err:  # named by the setting's own value: the benchmark's folder, or the task's
            raise err.naming(task.source_key(), task.root(dirs)) from None
        return datasets.Dataset.from_dict(columns)
    if not task.hub_dataset or not spec.hub_split:
        raise UserError(f"task {task.name} has no local data and no hub dataset for split {split}",
                        key=task.source_key(), value=None, allowed="the folder holding the task's files")
    try:
        ds = _load_hub(task.hub_dataset, spec.hub_config or task.hub_config, spec.hub_split)
    except Exception as err:  # offline, no cache, hub down: all the same to the user
        raise UserError(
            f"no data for task {task.name} ({task.hub_dataset} is neither reachable nor cached: {type(err).__name__})",
            key=task.source_key(), value=None,
            allowed=f"{task.folder_hint()}, or go online so {task.hub_dataset} can be downloaded",
        ) from err
    names = task.hub_text_fields
    return datasets.Dataset.from_dict({
        "text_a": ds[names[0]],
        "text_b": ds[names[1]] if len(names) > 1 else [None] * len(ds),
        "label": [_hub_label(task, v) for v in ds[task.hub_label_field]],
        "idx": list(range(len(ds))),
    })


def _hub_label(task: Task, value: Any) -> float | int:
    """Hub labels are class ids (-1 for unlabelled rows), booleans (ids 0, 1) or scores."""
    if task.is_regression:
        return float(value)
    return int(value)


def hub_reachable(timeout: float = 2.0) -> bool:
    """One quick connect (name lookup included, which ignores socket timeouts, hence the thread)
    instead of the hub client's half a minute of retries when offline."""
    if datasets.config.HF_HUB_OFFLINE:
        return False

    ok = []

    def connect() -> None:
        with contextlib.suppress(OSError):
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            ok.append(True)

    thread = threading.Thread(target=connect, daemon=True)  # a daemon: exit never waits for it
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _load_hub(dataset: str, config: str | None, split: str) -> datasets.Dataset:
    """A hub dataset, or its copy in the local ``datasets`` cache when offline."""
    if hub_reachable():
        return datasets.load_dataset(dataset, config, split=split)
    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True  # cache only, no retries
    try:
        return datasets.load_dataset(dataset, config, split=split)
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


def fixed_subset(n_rows: int, size: int | None, seed: int = 0) -> np.ndarray | None:
    """Indices of a fixed, training-seed-independent subset (nested: 100 is inside 250), in file order:
    the first ``size`` rows of one permutation of the file's rows (``subset_seed``)."""
    if size is None or size >= n_rows:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n_rows)[:size])


def heldout_subset(n_rows: int, size: int, seed: int = 0) -> np.ndarray:
    """Indices of the held-out rows (``data.heldout_size``), in file order: the LAST ``size`` rows of
    the permutation :func:`fixed_subset` takes its first rows from, so they are disjoint from every
    training subset that leaves room for them (``train_size + heldout_size <= n_rows``), the same for
    every seed, pooling and training size, and nested (100 held-out rows are inside 250)."""
    return np.sort(np.random.default_rng(seed).permutation(n_rows)[n_rows - size:])




class Encoded(Dataset):
    """Tokenised rows in memory, each column one numpy array: a row's token ids are
    ``ids[offsets[i]:offsets[i + 1]]`` (int32; segment ids int8), not a Python list per row (about
    36 bytes per token id, ten times as much: hundreds of MB for MNLI or QQP). Built from lists
    (one per row) or, without them, from the tokenised Arrow table (:meth:`from_table`)."""

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[list[int]], labels: Any, idx: Any,
                 n_tokens: Any) -> None:
        lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))
        self._set(np.fromiter((t for row in input_ids for t in row), dtype=np.int32, count=int(lengths.sum())),
                  np.fromiter((t for row in token_type_ids for t in row), dtype=np.int8, count=int(lengths.sum())),
                  lengths, labels, idx, n_tokens)

    def _set(self, ids: np.ndarray, types: np.ndarray, lengths: np.ndarray, labels: Any, idx: Any,
             n_tokens: Any) -> None:
        self.ids, self.types = ids, types
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self.labels = np.asarray(labels)  # int64 class ids, or float64 scores (regression)
        self.idx = np.asarray(idx, dtype=np.int64)
        # real tokens, the first ones (padding is on the right); < the row's length only with pad_to_max_length
        self.n_tokens = np.asarray(n_tokens, dtype=np.int64)

    @classmethod
    def from_table(cls, table) -> Encoded:
        """From the tokenised split (a ``pyarrow.Table``: ``input_ids token_type_ids label idx n_tokens``)."""
        import pyarrow.compute as pc

        out = cls.__new__(cls)
        ids, types = (table.column(name).combine_chunks() for name in ("input_ids", "token_type_ids"))
        out._set(np.array(pc.list_flatten(ids), dtype=np.int32), np.array(pc.list_flatten(types), dtype=np.int8),
                 np.array(pc.list_value_length(ids), dtype=np.int64),
                 table.column("label").to_numpy(), table.column("idx").to_numpy(), table.column("n_tokens").to_numpy())
        return out

    def row(self, i: int) -> tuple[list[int], list[int]]:
        """Row ``i``'s token ids and segment ids."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b].tolist(), self.types[a:b].tolist()

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> int:
        return i  # the collator reads the rows: batches are built column-wise, not row by row

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class Collator:
    """Pads a batch of row indices to the batch's longest row (right padding), rounded up to a
    multiple of ``multiple`` when given: a compiled model then sees a bounded set of sequence
    lengths (``max_length / multiple`` of them) instead of one graph per length."""

    def __init__(self, data: Encoded, pad_id: int, regression: bool, multiple: int | None = None) -> None:
        self.data, self.pad_id, self.regression, self.multiple = data, pad_id, regression, multiple

    def __call__(self, rows: list[int] | list[tuple[int, float]]) -> dict[str, torch.Tensor]:
        d = self.data
        weights = None
        if rows and isinstance(rows[0], tuple):  # (row, loss weight) from ShardedBatchSampler
            rows, weights = [r for r, _ in rows], [w for _, w in rows]
        starts, ends = d.offsets[rows], d.offsets[np.asarray(rows) + 1]
        width = int((ends - starts).max())
        if self.multiple and self.multiple > 1:
            width = -(-width // self.multiple) * self.multiple
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (a, b, i) in enumerate(zip(starts, ends, rows, strict=True)):
            ids[r, : b - a] = d.ids[a:b]
            types[r, : b - a] = d.types[a:b]
            mask[r, : d.n_tokens[i]] = 1
        dtype = torch.float32 if self.regression else torch.long
        batch = {
            "input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.as_tensor(d.labels[rows], dtype=dtype),
            "idx": torch.as_tensor(d.idx[rows], dtype=torch.long),
        }
        if weights is not None:
            batch["weight"] = torch.as_tensor(weights, dtype=torch.float32)
        return batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle all rows, cut them into mega-batches of
    ``mega * batch_size`` rows, sort each by length and cut it into batches, then shuffle the
    batch order. The order depends only on ``seed`` and the epoch (``set_epoch``), so runs are
    reproducible and a resumed run sees the same batches."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mega: int = 50, shuffle: bool = True,
                 group: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.mega = lengths, batch_size, seed, mega
        self.shuffle, self.group, self.epoch = shuffle, group, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        if self.group:
            size = self.mega * self.batch_size
            order = np.concatenate([
                chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, max(1, math.ceil(len(order) / size)))
            ])
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.group and self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)


class ShardedBatchSampler(Sampler[list[tuple[int, float]]]):
    """Data-parallel training with the semantics of one process: the global batches are exactly
    those of ``batches`` (a :class:`LengthGroupedBatchSampler`: same rows per step, each row once
    per epoch, order a function of (seed, epoch) only), and each is split into ``world_size``
    near-equal parts; process ``rank`` trains on part ``rank``.

    Rows come with a loss weight, ``world_size / global batch size``: the processes' summed,
    weighted losses, averaged by DDP's gradient all-reduce, are the global batch's mean loss. A
    process whose part of a (small, last) batch is empty gets one row with weight 0, so every
    process takes every step."""

    def __init__(self, batches: LengthGroupedBatchSampler, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            part = np.array_split(np.asarray(batch), self.world_size)[self.rank].tolist()
            weight = self.world_size / len(batch)
            yield [(i, weight) for i in part] if part else [(batch[0], 0.0)]


def _sort_batches(lengths: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Evaluation batches: rows sorted by length (less padding); predictions are put back in
    file order by ``idx``. With several processes, process ``rank`` takes every
    ``world_size``-th row of that order: each row is evaluated exactly once, by one process."""
    order = np.argsort(-lengths, kind="stable")[rank::world_size]
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def publish(ds: datasets.Dataset, path: Path) -> None:
    """Write a cache entry so that any number of concurrent processes can fill and read the cache:
    each writes into its own temporary folder (a name unique to the host, process and call, never
    drawn from the seeded RNG: jobs with the same seed would collide), then renames it into place
    in one step. The first writer wins; a later one finds the entry there and drops its copy
    (same content). Readers only ever see whole entries: an entry exists once its rename is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        ds.save_to_disk(str(tmp))
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


HASHES = ".file-hashes"  # in the cache folder: a data file's content hash, by its inode, size and times
SETTLED_S = 2.0  # a file's times are trusted once its last change is this old (filesystems of 1 s resolution)


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """The SHA-256 of a file's content (the cache key of a data file: 0.8 s for MNLI's 430 MB). With
    ``cache_dir`` it is kept there, by the file's device, inode, size, mtime and ctime: any write to
    the file changes its ctime, which no one can set back (``cp -p`` and ``rsync -a`` keep the
    mtime, not the ctime), so a kept hash is the content's."""
    st = path.stat()
    memo = None
    if cache_dir is not None:
        key = json.dumps([str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        memo = cache_dir / HASHES / hashlib.sha1(key.encode()).hexdigest()
        with contextlib.suppress(OSError, UnicodeDecodeError):
            kept = memo.read_text().strip()
            if len(kept) == 64:
                return kept
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if memo is not None and time.time() - st.st_ctime > SETTLED_S:
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
        with contextlib.suppress(OSError):  # a cache that cannot keep it: hashed again next time
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(value + "\n")
            os.replace(tmp, memo)
        with contextlib.suppress(OSError):
            tmp.unlink()
    return value


def load_cached(path: Path) -> datasets.Dataset | None:
    """The cache entry at ``path``, read through (every column checked); None, after one line
    saying so, when it cannot be read: the entry is moved out of the way (never deleted under a
    reader: renamed first) and the caller rebuilds it."""
    try:
        ds = datasets.load_from_disk(str(path))
        table = ds.with_format("arrow")[:]
        table.validate(full=True)
        return ds
    except Exception as err:  # noqa: BLE001 - any damage: truncated Arrow file, missing shard, bad JSON
        log.warning("tokenised cache entry %s cannot be read (%s: %s): rebuilding it", path, type(err).__name__,
                    " ".join(str(err).split())[:120])
        aside = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.damaged")
        with contextlib.suppress(OSError):
            os.rename(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        return None


class TaskDataModule(L.LightningDataModule):
    def __init__(
        self, task: Task, tokenizer, glue_dir: str | None = None, superglue_dir: str | None = None,
        max_length: int = 128,
        batch_size: int = 32, eval_batch_size: int = 128, train_size: int | None = None,
        subset_seed: int = 0, heldout_size: int | None = None, pad_to_max_length: bool = False, pad_to_multiple_of: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0, pin_memory: bool = False, cache_dir: str | None = None, seed: int = 0,
    ) -> None:
        super().__init__()
        self.task, self.tokenizer = task, tokenizer
        # each benchmark's folder: the task's files are in its own data_dir, or under its
        # benchmark's folder, or (None) on the hub
        self.dirs = benchmark_dirs({"glue_dir": glue_dir, "superglue_dir": superglue_dir})
        self.max_length = max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_size, self.subset_seed, self.heldout_size = train_size, subset_seed, heldout_size
        self.pad_to_max_length, self.group_by_length = pad_to_max_length, group_by_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache_dir, self.seed = cache_dir, seed
        self.splits: dict[str, Encoded] = {}
        self.n_train_full: int | None = None  # training rows before data.train_size

    # ----------------------------------------------------------------- loading and caching
    def _cache_key(self, split: str) -> str:
        spec = self.task.split(split)
        folder = self.task.folder(self.dirs, split)
        if folder:
            path = folder / spec.file
            # the content, not the path, size and time: a corrected file copied with its times kept
            # (cp -p, rsync -a) has the size and mtime of the old one
            memo = Path(self.cache_dir).expanduser() if self.cache_dir else None
            source = [path.stat().st_size, file_sha256(path, memo)] if path.exists() else str(path)
        else:
            source = [self.task.hub_dataset, spec.hub_config or self.task.hub_config, spec.hub_split]
        tok = self.tokenizer
        key = json.dumps([CACHE_VERSION, self.task.name, split, source, type(tok).__name__, tok.name_or_path,
                          len(tok), self.max_length, self.pad_to_max_length, self.task.text_fields,
                          self.task.label_field, self.task.label_values], sort_keys=True, default=str)
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def encode(self, split: str) -> datasets.Dataset:
        """Tokenised split, from the on-disk cache when this (task, split, file, tokenizer,
        max_length) was seen before."""
        path = Path(self.cache_dir).expanduser() / f"{self.task.name}-{split}-{self._cache_key(split)}" if self.cache_dir else None
        if path is not None and path.is_dir():  # published entries are complete (see publish) ...
            cached = load_cached(path)
            if cached is not None:  # ... unless damaged since (a full disk, a copy cut short): rebuilt
                return cached
        raw = load_split(self.task, split, self.dirs)
        cols = raw.to_dict()
        texts = [cols["text_a"]] if not len(raw) or cols["text_b"][0] is None else [cols["text_a"], cols["text_b"]]
        # One batched call into the Rust tokenizer (no per-batch map/fingerprinting); it refuses
        # an empty batch, so a split without rows skips it.
        # Segment ids always (zeros from tokenizers that make none): the model uses them only if
        # its encoder family does. Padding (pad_to_max_length) goes on the right whatever the
        # tokenizer's padding_side: the Collator marks the first n_tokens positions as real.
        enc = self.tokenizer(*texts, truncation=True, max_length=self.max_length, return_token_type_ids=True,
                             padding="max_length" if self.pad_to_max_length else False,
                             padding_side="right") if len(raw) else \
            {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        ds = datasets.Dataset.from_dict({
            "label": cols["label"], "idx": cols["idx"],
            "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
            "n_tokens": [sum(m) for m in enc["attention_mask"]],
        }, features=datasets.Features({
            "label": raw.features["label"], "idx": raw.features["idx"],
            "input_ids": datasets.List(datasets.Value("int32")),
            "token_type_ids": datasets.List(datasets.Value("int8")),
            "n_tokens": datasets.Value("int32"),
        }))
        if path is not None and len(ds):  # a split without rows is refused (_rows), never cached
            publish(ds, path)
        return ds

    def _to_memory(self, ds: datasets.Dataset) -> Encoded:
        """The split's columns as numpy arrays (no Python list per row: :class:`Encoded`)."""
        return Encoded.from_table(ds.with_format("arrow")[:])

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train = self._rows("train")
        if self.train_size is not None and self.train_size > len(train):
            raise UserError(f"more than the {len(train)} training rows of task {self.task.name}",
                            key="data.train_size", value=self.train_size,
                            allowed=f"an integer from 1 to {len(train)}, or null for all of them")
        self.n_train_full = len(train)
        heldout = None
        if self.heldout_size is not None:
            room = len(train) - (self.train_size or len(train))
            if self.train_size is None or self.heldout_size > room:
                allowed = (f"an integer from 1 to {room} (the {len(train)} training rows less data.train_size="
                           f"{self.train_size}), or null" if self.train_size is not None else
                           "null, or set data.train_size: the held-out rows are rows a training subset leaves out")
                raise UserError(f"the training set of task {self.task.name} has no room for them", key="data.heldout_size",
                                value=self.heldout_size, allowed=allowed)
            heldout = train.select(heldout_subset(len(train), self.heldout_size, self.subset_seed))
        keep = fixed_subset(len(train), self.train_size, self.subset_seed)
        if keep is not None:
            train = train.select(keep)
        self.splits["train"] = self._to_memory(train)
        for name in self.task.eval:
            self.splits[name] = self._to_memory(self._rows(name))
        if heldout is not None:
            self.splits[HELDOUT] = self._to_memory(heldout)
        log.info("task %s: %s", self.task.name, {k: len(v) for k, v in self.splits.items()})

    def _rows(self, split: str) -> datasets.Dataset:
        """A split to train or evaluate on: it needs rows."""
        ds = self.encode(split)
        if not len(ds):
            spec = self.task.split(split)
            folder = self.task.folder(self.dirs, split)
            source = folder / spec.file if folder \
                else f"{self.task.hub_dataset} {spec.hub_config or self.task.hub_config} {spec.hub_split}"
            raise UserError(f"no rows in {source} (a header only?)", key=self.task.source_key(),
                            value=self.task.root(self.dirs), allowed=f"a {split} file with at least one row")
        return ds

    def test_split(self, name: str) -> Encoded:
        return self._to_memory(self.encode(name))

    # ----------------------------------------------------------------- loaders
    def _loader(self, data: Encoded, batch_sampler) -> DataLoader:
        return DataLoader(
            data, batch_sampler=batch_sampler, num_workers=self.num_workers, pin_memory=self.pin_memory,
            collate_fn=Collator(data, self.tokenizer.pad_token_id, self.task.is_regression, self.pad_to_multiple_of),
            persistent_workers=self.num_workers > 0,
        )

    def _placement(self) -> tuple[int, int]:
        """(rank, world size) of this process: (0, 1) unless a data-parallel trainer runs it."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_batches(self) -> LengthGroupedBatchSampler:
        """The global training batches (the same for any number of processes)."""
        data = self.splits["train"]
        return LengthGroupedBatchSampler(data.lengths, self.batch_size, self.seed, group=self.group_by_length)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._placement()
        batches = self.train_batches()
        return self._loader(self.splits["train"], batches if world == 1 else ShardedBatchSampler(batches, rank, world))

    def eval_loader(self, data: Encoded, sharded: bool = False) -> DataLoader:
        rank, world = self._placement() if sharded else (0, 1)
        return self._loader(data, _sort_batches(data.lengths, self.eval_batch_size, rank, world))

    def eval_names(self) -> list[str]:
        """The splits every evaluation predicts: the task's dev splits, then the held-out rows."""
        return [*self.task.eval, *([HELDOUT] if self.heldout_size is not None else [])]

    def val_dataloader(self) -> list[DataLoader]:
        return [self.eval_loader(self.splits[name], sharded=True) for name in self.eval_names()]
