"""SuperGLUE tasks (every ``configs/task/*.yaml`` with ``benchmark: superglue``), read from our
fixtures in the official JSONL layout (``tests/fixtures/superglue/<Task>/{train,val,test}.jsonl``)
and, through a stand-in for the hub, in the hub's layout; a tiny run of each."""

import json
from pathlib import Path

import datasets
import pytest
from omegaconf import OmegaConf

from maxpoolbert.core.errors import UserError
from maxpoolbert.tasks.task import from_config
from maxpoolbert.training import data as D

from .conftest import ROOT

SUPERGLUE = Path(__file__).resolve().parent / "fixtures" / "superglue"
YAMLS = {p.stem: OmegaConf.load(p) for p in sorted((ROOT / "configs" / "task").glob("*.yaml"))}
NAMES = [name for name, cfg in YAMLS.items() if cfg.get("benchmark") == "superglue"]


def test_superglue_tasks_exist():
    assert "boolq" in NAMES


def lines(name: str, file: str) -> list[dict]:
    """The fixture's JSON objects, read here independently of the project's readers."""
    folder = SUPERGLUE / YAMLS[name].dir
    return [json.loads(line) for line in (folder / file).read_text().splitlines() if line.strip()]


def class_id(name: str, value) -> int:
    """The class id of a raw label: its position in the YAML's label_values (YAML true == JSON true)."""
    values = list(YAMLS[name].label_values)
    return values.index(value)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_files_read_in_file_order(name):
    task = from_config(YAMLS[name])
    assert task.format == "jsonl" and task.benchmark == "superglue"
    folder = task.folder({"superglue": str(SUPERGLUE)})
    for split in ["train", *task.eval, *task.test]:
        spec = task.split(split)
        cols, skipped = task.read_file(folder / spec.file, spec)
        rows = lines(name, spec.file)
        assert skipped == 0 and len(cols["idx"]) == len(rows) and cols["idx"] == list(range(len(rows)))
        first, second = task.text_fields
        assert cols["text_a"] == [r[first] for r in rows] and cols["text_b"] == [r[second] for r in rows]
        if spec.labelled:
            assert cols["label"] == [class_id(name, r["label"]) for r in rows]
        else:
            assert cols["label"] == [-1] * len(rows)
    assert task.split("dev").file == "val.jsonl"


@pytest.mark.parametrize("name", NAMES)
def test_hub_layout_gives_the_same_rows(name, monkeypatch):
    """Without a local folder, rows come from the hub's copy (``hub_dataset``/``hub_config``), whose
    labels are class ids: a stand-in built from the fixture in that layout gives the same rows."""
    task = from_config(YAMLS[name])
    asked = []

    def fake_hub(dataset, config, split):
        asked.append((dataset, config, split))
        file = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}[split]
        rows = lines(name, file)
        return datasets.Dataset.from_dict({
            **{f: [r[f] for r in rows] for f in task.hub_text_fields},
            "idx": [r["idx"] for r in rows],
            "label": [class_id(name, r["label"]) if "label" in r else -1 for r in rows],
        })

    monkeypatch.setattr(D, "_load_hub", fake_hub)
    for split in ["train", "dev"]:
        local = D.load_split(task, split, {"superglue": str(SUPERGLUE)}).to_dict()
        hub = D.load_split(task, split, {}).to_dict()
        assert hub == local
    assert asked == [(task.hub_dataset, task.hub_config, "train"), (task.hub_dataset, task.hub_config, "validation")]
    assert task.hub_dataset == "aps/super_glue"


def test_no_local_folder_offline_is_one_line(monkeypatch):
    def offline(*args):
        raise ConnectionError("offline")

    monkeypatch.setattr(D, "_load_hub", offline)
    task = from_config(YAMLS["boolq"])
    with pytest.raises(UserError) as err:
        D.load_split(task, "train", {})
    text = str(err.value)
    assert text.startswith("data.superglue_dir=null: no data for task boolq (aps/super_glue is neither reachable")
    assert "; a SuperGLUE folder in its official layout (SUPERGLUE_DIR or data.superglue_dir=" in text
    assert "\n" not in text


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_from_the_fixtures(name, tmp_path, cache_dir, monkeypatch):
    import maxpoolbert

    run_dir = tmp_path / name
    monkeypatch.setenv("SUPERGLUE_DIR", str(SUPERGLUE))
    maxpoolbert.train([f"task={name}", "pooling=maxpool_mha", "model=tiny", "logger=none", "trainer.max_epochs=2",
                       "save_model=false", f"data.cache_dir={cache_dir}"], output_dir=run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    task = from_config(YAMLS[name])
    assert results["task_info"] == {"name": name, "display_name": YAMLS[name].display_name, "benchmark": "superglue",
                                    "benchmark_name": "SuperGLUE", "metrics": task.metric_keys,
                                    "order": YAMLS[name].order}
    assert set(results["metrics"]) == set(task.metric_keys)
    val = lines(name, "val.jsonl")
    assert results["n_dev"] == {"dev": len(val)} and results["n_train_full"] == len(lines(name, "train.jsonl"))
    # dev_predictions.tsv: every val row, in file order, with its label
    rows = [line.split("\t") for line in (run_dir / "dev_predictions.tsv").read_text().splitlines()[1:]]
    assert [int(r[1]) for r in rows] == list(range(len(val)))
    assert [int(r[2]) for r in rows] == [class_id(name, r["label"]) for r in val]
    stored = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "${oc.env:SUPERGLUE_DIR,null}" in stored and str(SUPERGLUE) not in stored  # no path of this machine
