"""GLUE TSV parsers against the real files (GLUE_DIR) and our official-layout fixtures."""

import logging
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from maxpoolbert.core.errors import UserError
from maxpoolbert.tasks.task import Task

from .conftest import FIXTURES, ROOT, config_names, glue_dir


def task(name: str) -> Task:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"task={name}"])
    return instantiate(cfg.task, _convert_="all")


# The benchmarks' own test modules, each over every task config of its benchmark.
TESTED_IN = {"glue": "tests/test_tasks.py", "superglue": "tests/test_superglue.py"}
BENCHMARK = {name: task(name).benchmark for name in config_names("task")}
TASKS = [name for name, benchmark in BENCHMARK.items() if benchmark == "glue"]


@pytest.mark.parametrize("name", list(BENCHMARK))
def test_every_task_is_tested_with_its_benchmark(name):
    assert BENCHMARK[name] in TESTED_IN, f"task {name}: add tests for benchmark {BENCHMARK[name]} (see TESTED_IN)"


def read(name, split, root):
    t = task(name)
    return t.read_file(Path(root) / t.dir / t.split(split).file, t.split(split))


# Row counts and label sets of the official files (MANIFEST.md of ../shared/data/glue).
REAL = {
    ("cola", "train"): (8551, {0, 1}), ("cola", "dev"): (1043, {0, 1}), ("cola", "test"): (1063, {-1}),
    ("sst2", "train"): (67349, {0, 1}), ("sst2", "dev"): (872, {0, 1}), ("sst2", "test"): (1821, {-1}),
    ("mrpc", "train"): (3668, {0, 1}), ("mrpc", "dev"): (408, {0, 1}), ("mrpc", "test"): (1725, {-1}),
    ("stsb", "train"): (5749, None), ("stsb", "dev"): (1500, None), ("stsb", "test"): (1379, None),
    ("rte", "train"): (2490, {0, 1}), ("rte", "dev"): (277, {0, 1}), ("rte", "test"): (3000, {-1}),
    ("wnli", "train"): (635, {0, 1}), ("wnli", "dev"): (71, {0, 1}), ("wnli", "test"): (146, {-1}),
    ("qnli", "dev"): (5463, {0, 1}), ("qnli", "test"): (5463, {-1}),
}
# Tasks whose official files are not in ../shared/data/glue: our fixtures, tested below.
FIXTURE_TASKS = {"mnli", "qqp"}


def real_cases() -> list[tuple[str, str]]:
    """REAL, and every split of every task whose file is in GLUE_DIR (expectations or not)."""
    cases = set(REAL)
    if (root := glue_dir()) is not None:
        for name in TASKS:
            t = task(name)
            cases |= {(name, s) for s in ["train", *t.eval, *t.test] if (root / t.dir / t.split(s).file).is_file()}
    return sorted(cases)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_has_expectations(name):
    assert name in FIXTURE_TASKS or any(n == name for n, _ in REAL), (
        f"add expectations for {name}: its real files' row counts and labels to REAL in tests/test_tasks.py "
        "(or, without real files offline, a fixture test and its name in FIXTURE_TASKS)")


@pytest.mark.parametrize("name,split", real_cases())
def test_real_files_parse_completely(real_glue, name, split):
    assert (name, split) in REAL, f"add expectations for {name} {split}: its row count and labels to REAL"
    cols, skipped = read(name, split, real_glue)
    rows, labels = REAL[(name, split)]
    assert skipped == 0
    assert len(cols["text_a"]) == rows and cols["idx"] == list(range(rows))
    assert all(isinstance(t, str) and t.strip() for t in cols["text_a"])
    if task(name).text_fields[1:]:
        assert all(isinstance(t, str) and t.strip() for t in cols["text_b"])
    else:
        assert all(t is None for t in cols["text_b"])
    if labels is None:  # STS-B: similarity scores in [0, 5]; test unlabelled
        values = cols["label"]
        assert all(math.isnan(v) for v in values) if split == "test" else all(0 <= v <= 5 for v in values)
    else:
        assert set(cols["label"]) == labels


def test_real_rows_read_by_position_and_name(real_glue):
    # CoLA has no header: the first line is data, columns are positional.
    cola, _ = read("cola", "train", real_glue)
    assert cola["text_a"][0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert cola["label"][0] == 1
    # MRPC: header behind a UTF-8 BOM, quotes inside the text are plain characters.
    mrpc, _ = read("mrpc", "train", real_glue)
    assert mrpc["text_a"][0].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert mrpc["label"][:2] == [1, 0]
    # RTE: string labels map to the hub's ids (entailment=0, not_entailment=1).
    rte, _ = read("rte", "train", real_glue)
    assert rte["text_a"][0] == "No Weapons of Mass Destruction Found in Iraq Yet." and rte["label"][0] == 1
    stsb, _ = read("stsb", "train", real_glue)
    assert stsb["text_a"][0] == "A plane is taking off." and stsb["label"][0] == 5.0 and stsb["label"][1] == 3.8
    qnli, _ = read("qnli", "dev", real_glue)
    assert qnli["text_a"][0] == "What came into force after the new constitution was herald?" and qnli["label"][0] == 0


def test_mnli_fixture_gold_label_and_both_dev_sets():
    t = task("mnli")
    assert list(t.eval) == ["dev_matched", "dev_mismatched"]
    train, _ = read("mnli", "train", FIXTURES)
    m, _ = read("mnli", "dev_matched", FIXTURES)
    mm, _ = read("mnli", "dev_mismatched", FIXTURES)
    assert (len(train["label"]), len(m["label"]), len(mm["label"])) == (24, 12, 9)
    # dev rows carry label1..label5 before gold_label; gold_label is the one used
    lines = (FIXTURES / "MNLI" / "dev_matched.tsv").read_text().splitlines()
    gold = [line.split("\t")[-1] for line in lines[1:]]
    assert m["label"] == [["entailment", "neutral", "contradiction"].index(g) for g in gold]
    assert m["text_a"][0] == lines[1].split("\t")[8] and m["text_b"][0] == lines[1].split("\t")[9]
    test, _ = read("mnli", "test_mismatched", FIXTURES)
    assert test["label"] == [-1] * 5


def test_qqp_fixture_skips_and_counts_malformed_rows(caplog):
    with caplog.at_level(logging.WARNING):
        cols, skipped = read("qqp", "train", FIXTURES)
    assert skipped == 2 and len(cols["label"]) == 24
    assert "skipped 2 malformed row(s)" in caplog.text
    assert cols["text_a"][0] == "How do I learn Python quickly?" and cols["label"][:4] == [1, 0, 0, 1]
    dev, skipped = read("qqp", "dev", FIXTURES)
    assert skipped == 0 and len(dev["label"]) == 14
    test, _ = read("qqp", "test", FIXTURES)
    assert len(test["label"]) == 6 and set(test["label"]) == {-1}


def test_qnli_fixture():
    cols, _ = read("qnli", "train", FIXTURES)
    assert len(cols["label"]) == 24 and cols["label"][:2] == [0, 1]
    assert cols["text_a"][0] == "What did the cat do?" and cols["text_b"][0] == "The cat crossed the street."


def test_malformed_row_error_names_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(UserError, match=r"train.tsv:3: malformed row, 2 fields where the header has 4"):
        read("rte", "train", tmp_path)


def test_bad_label_and_missing_file_errors(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(UserError, match=r"train.tsv:2: bad label 'maybe'; expected one of \['entailment', 'not_entailment'\]"):
        read("rte", "train", tmp_path)
    with pytest.raises(UserError, match=r"missing data file .*RTE/dev.tsv"):
        read("rte", "dev", tmp_path)


def test_every_task_has_the_design_metric_keys():
    expected = {
        "cola": ["mcc"], "sst2": ["accuracy"], "mrpc": ["f1", "accuracy"], "stsb": ["pearson", "spearman"],
        "qqp": ["f1", "accuracy"], "mnli": ["accuracy_m", "accuracy_mm"], "qnli": ["accuracy"],
        "rte": ["accuracy"], "wnli": ["accuracy"], "boolq": ["accuracy"], "cb": ["accuracy", "macro_f1"],
    }
    missing = [name for name in BENCHMARK if name not in expected]
    assert not missing, f"add expectations for {', '.join(missing)}: the metric keys README.md gives (What a run records)"
    assert {name: task(name).metric_keys for name in BENCHMARK} == expected
    assert task("stsb").is_regression and not task("rte").is_regression


def test_the_benchmark_folder_map_is_declared_once_and_used_everywhere():
    """benchmarks.BENCHMARK_DIRS: each benchmark with a folder of its own -> its ``data`` setting. The
    settings exist (configs/config.yaml), the data module takes them, the config check, the run
    folder's note and predict (--<benchmark>-dir) follow the map; no module spells the map again."""
    import inspect
    import re

    from omegaconf import OmegaConf

    from maxpoolbert.predict import parse_args
    from maxpoolbert.runs.folder import RunFolder
    from maxpoolbert.tasks import benchmarks
    from maxpoolbert.training.data import TaskDataModule

    data = OmegaConf.load(ROOT / "configs" / "config.yaml").data
    params = inspect.signature(TaskDataModule).parameters
    assert set(benchmarks.BENCHMARK_DIRS) < set(benchmarks.BENCHMARKS)
    for name, key in benchmarks.BENCHMARK_DIRS.items():
        assert key in data and key in params
        assert getattr(parse_args(["run", f"--{key.replace('_', '-')}", f"/{name}"]), key) == f"/{name}"
    assert benchmarks.benchmark_dirs({"glue_dir": "/g", "superglue_dir": None}) == {"glue": "/g", "superglue": None}
    cfg = OmegaConf.create({"data": {"glue_dir": "/g", "superglue_dir": None}})
    assert RunFolder("/nowhere").data_dirs(cfg) == {"glue": "/g", "superglue": None}
    spelled = sorted(p.name for p in (ROOT / "maxpoolbert").rglob("*.py")
                     if p != ROOT / "maxpoolbert" / "tasks" / "benchmarks.py" and re.search(r"[\"']superglue[\"']\s*:", p.read_text()))
    assert spelled == [], f"the benchmark -> folder map spelled again in {spelled}: use benchmarks.BENCHMARK_DIRS"


def test_only_the_old_task_class_itself_is_upgraded():
    """A task config stored by a version before tasks beyond GLUE names maxpoolbert.tasks.GlueTask:
    it is completed as a GLUE task. Another class whose name ends the same way is not that class."""
    from maxpoolbert.tasks import task as tasks

    old = {"_target_": "maxpoolbert.tasks.GlueTask", "name": "rte"}
    assert tasks.upgrade(old)["benchmark"] == "glue" and tasks.upgrade(old)["hub_dataset"] == "nyu-mll/glue"
    assert "benchmark" not in tasks.upgrade({**old, "_target_": "mymodule.MyGlueTask"})


def test_lightnings_misconfiguration_is_a_user_error_by_its_type_not_its_name():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from maxpoolbert.core.errors import user_error

    assert str(user_error(MisconfigurationException("no batches left\nmore"))) == "no batches left"
    namesake = type("MisconfigurationException", (Exception,), {})
    assert user_error(namesake("a library's own error")) is None
