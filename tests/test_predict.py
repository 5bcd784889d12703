"""``python -m maxpoolbert.predict``: GLUE submission files from real (tiny) training runs.

Each run trains a random 2-layer BERT for two steps in this process (maxpoolbert.train); the predictions are
checked against the official file layout and against an independent, unpadded forward pass.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_model, save_model

from maxpoolbert.launch.run import build
from maxpoolbert.predict import main, predict_split
from maxpoolbert.training.data import TaskDataModule

from .conftest import ROOT, SUBPROCESS_TIMEOUT

RTE_LABELS = {"entailment", "not_entailment"}
MNLI_LABELS = {"entailment", "neutral", "contradiction"}


# ---------------------------------------------------------------------------- helpers
def train(tmp: Path, cache: Path, glue: Path, *overrides: str) -> Path:
    import maxpoolbert

    maxpoolbert.train(["model=tiny", "data.train_size=24", "data.max_length=64", "trainer.max_steps=2", "logger=none",
                       f"data.glue_dir={glue}", f"data.cache_dir={cache}", *overrides], output_dir=tmp / "run")
    return tmp / "run"


def read_file(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a TSV, tab-split only (as GLUE files must be read)."""
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    if lines[-1] == "":
        lines.pop()
    rows = [line.rstrip("\r").split("\t") for line in lines]
    return rows[0], rows[1:]


def read_submission(path: Path, n_rows: int) -> list[str]:
    """The prediction column, after checking the header and the indices 0..n-1."""
    assert path.read_text().startswith("index\tprediction\n")
    header, rows = read_file(path)
    assert header == ["index", "prediction"]
    assert len(rows) == n_rows
    assert [r[0] for r in rows] == [str(i) for i in range(n_rows)]
    assert all(len(r) == 2 for r in rows)
    return [r[1] for r in rows]


def n_test_rows(path: Path) -> int:
    return len(read_file(path)[1])


def load_trained(run_dir: Path):
    """Config, task, tokenizer and trained classifier (eval mode) rebuilt from a run folder."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    task, tokenizer, model = build(cfg)
    load_model(model, str(run_dir / "model.safetensors"))
    return cfg, task, tokenizer, model.eval()


def forward_rows(run_dir: Path, test_file: Path, columns: list[str], rows: list[int], model=None) -> np.ndarray:
    """Model outputs for some test rows, one row at a time without padding."""
    cfg, _, tokenizer, trained = load_trained(run_dir)
    model = model or trained
    header, data = read_file(test_file)
    pos = [header.index(c) for c in columns]
    out = []
    with torch.no_grad():
        for i in rows:
            enc = tokenizer(*(data[i][p] for p in pos), truncation=True,
                            max_length=cfg.data.max_length, return_tensors="pt")
            out.append(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])[0].numpy())
    return np.stack(out)


def some_rows(test_file: Path) -> list[int]:
    """The first rows, the last ones, and the longest ones (truncated at max_length)."""
    _, data = read_file(test_file)
    n = len(data)
    longest = sorted(range(n), key=lambda i: -sum(len(f) for f in data[i]))[:3]
    return sorted({*range(6), n - 2, n - 1, *longest})


def spread_head(run_dir: Path, dest: Path, test_file: Path, columns: list[str]) -> Path:
    """A copy of the run with its head rescaled so predictions vary from row to row.

    A tiny model trained two steps predicts nearly the same value for every input (one label;
    STS-B scores that all clip to 0), which would hide rows written in the wrong order. Here the
    classifier is rescaled on 40 test rows: both labels occur, and STS-B scores centre on 2.5
    with spread 1.5 (some clipped at 0 and 5).
    """
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("submission", "checkpoints"))
    _, task, _, model = load_trained(dest)
    out = forward_rows(dest, test_file, columns, list(range(40)), model)
    head = model.classifier
    with torch.no_grad():
        if task.is_regression:
            k = 1.5 / out[:, 0].std()
            head.weight.mul_(k)
            head.bias.copy_((head.bias - float(np.median(out[:, 0]))) * k + 2.5)
        else:
            diff = out[:, 0] - out[:, 1]
            k = 1.0 / diff.std()
            head.weight.mul_(k)
            head.bias.mul_(k)
            head.bias[1] += float(np.median(diff)) * k
    save_model(model, str(dest / "model.safetensors"))
    return dest


# ---------------------------------------------------------------------------- trained runs
PAIR = ["sentence1", "sentence2"]  # the text columns of the RTE, STS-B and diagnostic test files


@pytest.fixture(scope="module")
def rte_run(real_glue, cache_dir, tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("rte"), cache_dir, real_glue, "task=rte")


@pytest.fixture(scope="module")
def rte_varied(rte_run, real_glue, tmp_path_factory) -> Path:
    return spread_head(rte_run, tmp_path_factory.mktemp("rte_varied") / "run", real_glue / "RTE" / "test.tsv", PAIR)


@pytest.fixture(scope="module")
def stsb_varied(real_glue, cache_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stsb")
    run = train(tmp, cache_dir, real_glue, "task=stsb", "pooling=mean")
    return spread_head(run, tmp / "varied", real_glue / "STS-B" / "test.tsv", PAIR)


@pytest.fixture(scope="module")
def mnli_run(full_glue, cache_dir, tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("mnli"), cache_dir, full_glue, "task=mnli", "pooling=mean")


@pytest.fixture(scope="module")
def rte_submission(rte_varied) -> Path:
    """One run, default output folder RUN_DIR/submission/."""
    assert main([str(rte_varied)]) == 0
    return rte_varied / "submission"


# ---------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_rte_submission_format(rte_submission, real_glue):
    assert sorted(p.name for p in rte_submission.iterdir()) == ["RTE.tsv"]
    values = read_submission(rte_submission / "RTE.tsv", n_test_rows(real_glue / "RTE" / "test.tsv"))
    assert set(values) == RTE_LABELS


@pytest.mark.slow
def test_rte_predictions_match_independent_forward(rte_varied, rte_submission, real_glue):
    test_file = real_glue / "RTE" / "test.tsv"
    rows = some_rows(test_file) + list(range(100, 140))
    expected = forward_rows(rte_varied, test_file, PAIR, rows)

    # The module's raw outputs, batched by length and put back in file order.
    cfg, task, tokenizer, model = load_trained(rte_varied)
    dm = TaskDataModule(task, tokenizer, seed=cfg.seed,
                        **{**OmegaConf.to_container(cfg.data, resolve=True), "eval_batch_size": 64})
    got = predict_split(model, dm, dm.test_split("test"))
    np.testing.assert_allclose(got[rows], expected, atol=1e-4, rtol=1e-4)

    # The written labels are the argmax of the independent outputs (rows far from a tie).
    values = read_submission(rte_submission / "RTE.tsv", n_test_rows(test_file))
    clear = [k for k, row in enumerate(expected) if abs(row[0] - row[1]) > 1e-3]
    assert len({int(expected[k].argmax()) for k in clear}) == 2
    for k in clear:
        assert values[rows[k]] == task.label_values[int(expected[k].argmax())], rows[k]


@pytest.mark.slow
def test_stsb_and_mnli_into_one_folder(stsb_varied, mnli_run, real_glue, full_glue, tmp_path, capsys):
    out = tmp_path / "submission"
    assert main([str(stsb_varied), str(mnli_run), "--out", str(out), "--batch-size", "16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["MNLI-m.tsv", "MNLI-mm.tsv", "STS-B.tsv"]
    assert "AX.tsv skipped" in capsys.readouterr().out  # the fixture folder has no diagnostic set

    stsb_test = real_glue / "STS-B" / "test.tsv"
    values = read_submission(out / "STS-B.tsv", n_test_rows(stsb_test))
    scores = np.array([float(v) for v in values])
    assert all(len(v.split(".")[1]) == 3 for v in values)
    assert scores.min() == 0.0 and scores.max() == 5.0 and len(set(values)) > 100  # clipped, varied
    rows = some_rows(stsb_test) + list(range(100, 140))
    expected = np.clip(forward_rows(stsb_varied, stsb_test, PAIR, rows)[:, 0], 0, 5)
    np.testing.assert_allclose(scores[rows], expected, atol=6e-4)

    for name, file in [("MNLI-m", "test_matched.tsv"), ("MNLI-mm", "test_mismatched.tsv")]:
        values = read_submission(out / f"{name}.tsv", n_test_rows(full_glue / "MNLI" / file))
        assert set(values) <= MNLI_LABELS


@pytest.mark.slow
def test_mnli_diagnostic_ax(mnli_run, full_glue, tmp_path):
    glue = tmp_path / "glue"
    (glue / "diagnostic").mkdir(parents=True)
    (glue / "MNLI").symlink_to(full_glue / "MNLI")
    (glue / "diagnostic" / "diagnostic.tsv").write_text(
        "index\tsentence1\tsentence2\n"
        "0\tThe cat sat on the mat.\tThe cat did not sit on the mat.\n"
        "1\tA man is playing a guitar.\tA person plays an instrument.\n"
        "2\tNo dog barked.\tSome dog barked loudly at the mail carrier this morning.\n"
    )
    out = tmp_path / "out"
    assert main([str(mnli_run), "--glue-dir", str(glue), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["AX.tsv", "MNLI-m.tsv", "MNLI-mm.tsv"]
    assert set(read_submission(out / "AX.tsv", 3)) <= MNLI_LABELS
    expected = forward_rows(mnli_run, glue / "diagnostic" / "diagnostic.tsv", PAIR, [0, 1, 2])
    labels = ["entailment", "neutral", "contradiction"]
    for i, value in enumerate(read_submission(out / "AX.tsv", 3)):
        top = np.sort(expected[i])
        if top[-1] - top[-2] > 1e-3:
            assert value == labels[int(expected[i].argmax())]


def test_not_a_run(tmp_path):
    with pytest.raises(SystemExit, match=r"error: .*not a finished run: no results\.json"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit, match=r"error: .*is not a folder"):
        main([str(tmp_path / "nowhere")])


@pytest.mark.slow
def test_run_without_saved_model(tmp_path, rte_run):
    no_model = tmp_path / "no_model"
    shutil.copytree(rte_run / ".hydra", no_model / ".hydra")
    shutil.copy(rte_run / "results.json", no_model)
    with pytest.raises(SystemExit, match=r"no model\.safetensors.*save_model=true"):
        main([str(no_model)])
    assert not (no_model / "submission").exists()


@pytest.mark.slow
def test_missing_test_file(tmp_path, rte_run, real_glue):
    glue = tmp_path / "glue"
    (glue / "RTE").mkdir(parents=True)
    shutil.copy(real_glue / "RTE" / "dev.tsv", glue / "RTE")
    with pytest.raises(SystemExit, match=r"error: missing test file .*RTE/test\.tsv") as info:
        main([str(rte_run), "--glue-dir", str(glue), "--out", str(tmp_path / "out")])
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_two_runs_of_one_task_refused(tmp_path, rte_run, rte_varied):
    with pytest.raises(SystemExit, match=r"both predict RTE\.tsv"):
        main([str(rte_run), str(rte_varied), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_several_runs_need_out(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert info.value.code == 2 and "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maxpoolbert.predict", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "results.json" in lines[0]


@pytest.mark.slow
def test_progress_while_predicting(tmp_path, rte_run, capsys):
    """A progress line every --progress-every seconds: rows done of the split, time left."""
    assert main([str(rte_run), "--out", str(tmp_path / "out"), "--progress-every", "0.001", "--batch-size", "256"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "rows predicted" in line]
    assert lines, "no progress line"
    done = [int(re.match(r"RTE\.tsv: (\d+)/3000 rows predicted \(\d+%\), about \d+ (s|min) left$", line).group(1))
            for line in lines]
    assert done == sorted(done) and 0 < done[0] < 3000


@pytest.mark.parametrize("payload", ["torch.load", "os.system", "builtins.eval"])
@pytest.mark.parametrize("section", ["model", "pooling", "task"])
def test_a_stored_config_naming_foreign_code_is_refused_and_never_run(section, payload, tmp_path, capsys):
    """predict builds the task and the model from the run's stored config: only this project's
    own classes (one line naming the file and the key otherwise; nothing of the payload runs)."""
    from hydra import compose, initialize_config_dir

    from .hostile import finished_run, payloads, plant_config

    marker = tmp_path / "ran"
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", "task=rte"])
    run_dir = finished_run(tmp_path / "run", cfg)
    key = plant_config(run_dir / ".hydra" / "config.yaml", section, payloads(tmp_path, marker)[payload])
    with pytest.raises(SystemExit) as info:
        main([str(run_dir), "--glue-dir", str(tmp_path)])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: {key}={payload}: in {run_dir / '.hydra' / 'config.yaml'}: not one "
                              "of this project's classes") and "\n" not in message, message
    assert not marker.exists() and not (run_dir / "submission").exists()
