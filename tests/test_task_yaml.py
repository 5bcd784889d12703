"""A task of the user's own: a YAML file in their own config folder (Hydra's search path) pointing
at their CSV / JSONL data, and the one-line errors for a task YAML or data file that is wrong."""

import json
from pathlib import Path

import pytest
import yaml

CSV_TRAIN = [("A warm, funny film; I loved it.", "good"), ("Dull, slow and far too long.", "bad"),
             ('The "twist" was obvious, sadly.', "bad"), ("Great cast, great songs.", "good")] * 6
CSV_DEV = [("Wonderful from start to end.", "good"), ("I want my money back, honestly.", "bad"),
           ("Not bad at all, really.", "good"), ("Boring, boring, boring.", "bad"), ("A joy.", "good")]

REVIEWS = {
    "_target_": "maxpoolbert.tasks.task.Task", "name": "reviews", "display_name": "Reviews", "benchmark": "custom",
    "format": "csv", "num_labels": 2, "label_values": ["bad", "good"], "text_fields": ["text"],
    "label_field": "stars", "train": {"file": "train.csv"},
    "eval": {"dev": {"file": "dev.csv", "metrics": {"accuracy": "accuracy", "f1": "f1"}}},
}


def csv_text(rows) -> str:
    """Written by hand (not with the csv module): quotes doubled, fields with commas quoted."""
    def field(text):
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text
    return "text,stars\n" + "".join(f"{field(t)},{y}\n" for t, y in rows)


def user_folder(tmp_path: Path, task: dict, files: dict[str, str]) -> tuple[Path, Path]:
    """``my_configs/task/<name>.yaml`` and the data folder it points at."""
    configs, data = tmp_path / "my_configs", tmp_path / "my_data"
    (configs / "task").mkdir(parents=True)
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    task = {**task, "data_dir": str(data)}
    (configs / "task" / f"{task.get('name', 'broken')}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    return configs, data


def train(tmp_path, configs: Path, name: str, cache_dir, *extra):
    """The run, in this process (maxpoolbert.train: the command line's checks and run)."""
    import maxpoolbert

    return maxpoolbert.train([f"hydra.searchpath=[file://{configs}]", f"task={name}", "model=tiny",
                              "pooling=maxpool_mha", "logger=none", "trainer.max_epochs=1", "save_model=false",
                              f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}", *extra])


def test_users_csv_task_from_their_own_config_folder(tmp_path, cache_dir):
    configs, data = user_folder(tmp_path, REVIEWS, {"train.csv": csv_text(CSV_TRAIN), "dev.csv": csv_text(CSV_DEV)})
    train(tmp_path, configs, "reviews", cache_dir)
    run_dir = tmp_path / "run"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task_info"] == {"name": "reviews", "display_name": "Reviews", "benchmark": "custom",
                                    "benchmark_name": "Custom", "metrics": ["accuracy", "f1"], "order": 100}
    assert results["n_train_full"] == len(CSV_TRAIN) and results["n_dev"] == {"dev": len(CSV_DEV)}
    rows = [line.split("\t") for line in (run_dir / "dev_predictions.tsv").read_text().splitlines()[1:]]
    assert [int(r[2]) for r in rows] == [["bad", "good"].index(y) for _, y in CSV_DEV]


def refused(run, *expected: str) -> str:
    """The run refused with one line (the command line's ``error: ...``, exit 2) naming what is expected."""
    from maxpoolbert.core.errors import UserError

    with pytest.raises(UserError) as err:
        run()
    line = str(err.value)
    assert "\n" not in line, line
    for part in expected:
        assert part in line, (part, line)
    return line


def yaml_path(configs: Path, name: str) -> str:
    return str(configs / "task" / f"{name}.yaml")


@pytest.mark.parametrize("change,expected", [
    ({"lable_field": "stars", "label_field": None}, ["task.lable_field=stars: unknown field (did you mean label_field?)"]),
    ({"label_field": None}, ["task.label_field=null: missing"]),
    ({"format": "xml"}, ["task.format=xml: not one of the choices", "; one of tsv, csv, jsonl"]),
    ({"benchmark": "glu"}, ["task.benchmark=glu", "one of glue, superglue, custom"]),
    ({"train": {"file": "train.csv", "colums": ["a"]}}, ["task.train.colums", "unknown field"]),
])
def test_bad_task_yaml_is_one_line_naming_the_file(tmp_path, cache_dir, change, expected):
    task = {k: v for k, v in {**REVIEWS, **change}.items() if v is not None}
    configs, _ = user_folder(tmp_path, task, {"train.csv": csv_text(CSV_TRAIN), "dev.csv": csv_text(CSV_DEV)})
    line = refused(lambda: train(tmp_path, configs, "reviews", cache_dir), *expected)
    assert yaml_path(configs, "reviews") in line


def test_unknown_metric_names_the_file(tmp_path, cache_dir):
    task = {**REVIEWS, "eval": {"dev": {"file": "dev.csv", "metrics": {"acc": "acuracy"}}}}
    configs, _ = user_folder(tmp_path, task, {"train.csv": csv_text(CSV_TRAIN), "dev.csv": csv_text(CSV_DEV)})
    refused(lambda: train(tmp_path, configs, "reviews", cache_dir), "unknown metric 'acuracy'", "macro_f1",
            yaml_path(configs, "reviews"))


NLI = {"_target_": "maxpoolbert.tasks.task.Task", "name": "nli", "display_name": "NLI", "benchmark": "custom",
       "format": "jsonl", "num_labels": 3, "label_values": ["entailment", "contradiction", "neutral"],
       "text_fields": ["premise", "hypothesis"], "label_field": "label", "train": {"file": "train.jsonl"},
       "eval": {"dev": {"file": "dev.jsonl", "metrics": {"accuracy": "accuracy"}}}}
GOOD = [{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": "entailment"},
        {"premise": "A cat sleeps.", "hypothesis": "The cat runs.", "label": "contradiction"},
        {"premise": "A man sings.", "hypothesis": "He is happy.", "label": "neutral"}] * 4


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("third_line,expected", [
    ('{"premise": "A bird sings.", "hypothesis": "Noise."', "train.jsonl:3: not JSON"),
    ('["A bird sings.", "Noise.", "neutral"]', "train.jsonl:3: a JSON list, not an object"),
    ('{"premise": "A bird sings.", "label": "neutral"}', "train.jsonl:3: no field 'hypothesis'"),
    ('{"premise": "A bird sings.", "hypothesis": "Noise.", "label": "maybe"}',
     "train.jsonl:3: bad label 'maybe'; expected one of ['entailment', 'contradiction', 'neutral']"),
])
def test_bad_jsonl_line_is_one_line_naming_file_and_line(tmp_path, cache_dir, third_line, expected):
    lines = jsonl(GOOD).splitlines()
    lines.insert(2, third_line)
    configs, data = user_folder(tmp_path, NLI, {"train.jsonl": "\n".join(lines) + "\n", "dev.jsonl": jsonl(GOOD)})
    line = refused(lambda: train(tmp_path, configs, "nli", cache_dir), expected)
    assert str(data / "train.jsonl") in line
