"""The committed reference studies (docs/results/, docs/results_v2/, docs/fast_modes/): each page is what `make study`'s
report makes from its committed runs with the options committed beside them (runs/report.yaml),
byte for byte (so it can never drift from its data); the runs hold no path of the machine they ran on and no
benchmark data; and relaunching the (complete) first study on them launches nothing."""

import shutil

import pytest

from maxpoolbert.report import main as report
from maxpoolbert.runs.folder import (
    HELDOUT_ARCHIVE,
    HELDOUT_PREDICTIONS,
    PREDICTIONS,
    PREDICTIONS_ARCHIVE,
    RunFolder,
    find_run_folders,
)

from .conftest import ROOT, run_train

RESULTS = ROOT / "docs" / "results"
RUNS = RESULTS / "runs"
PAGES = [RESULTS, ROOT / "docs" / "results_v2", ROOT / "docs" / "fast_modes"]
PAGE_FILES = ["results.md", "results.tex", "results.csv", "cells.csv", "comparisons.csv", "selection.csv",
              "budget.csv", "differences.csv", "low_resource.csv", "degenerate.csv", "skipped.csv"]


def committed_runs(page=RESULTS) -> list:
    runs = page / "runs"
    return sorted(folder.path for folder in find_run_folders(runs)) if runs.is_dir() else []


pytestmark = pytest.mark.skipif(not committed_runs(), reason="no committed study in docs/results/runs")
each_page = pytest.mark.parametrize("page", [p for p in PAGES if committed_runs(p)], ids=lambda p: p.name)


@pytest.mark.slow  # a whole study's report (the v2 page: 160 runs, row bootstraps): about 2 minutes
@each_page
def test_the_page_is_what_make_report_makes_from_the_committed_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # `make study` runs from the project root
    where = page.relative_to(ROOT)
    assert report(["--runs", f"{where}/runs", "--out", str(tmp_path)]) == 0
    written = {p.name for p in tmp_path.iterdir() if p.suffix in (".md", ".tex", ".csv")}
    for name in sorted(set(PAGE_FILES) | written):
        committed = page / name
        if committed.exists() or (tmp_path / name).exists():
            assert (tmp_path / name).read_bytes() == committed.read_bytes(), f"{where}/{name} drifted"


def test_the_committed_runs_hold_no_benchmark_data(real_glue, tmp_path):
    """Each run commits its predictions without the gold labels, which the report reads back from
    the task's dev file: the labels read back are the ones the run wrote (its archived TSV rebuilt)."""
    for folder in committed_runs():
        assert not list(folder.glob("*.tsv")), f"{folder.relative_to(ROOT)} holds a TSV"
        header = (folder / PREDICTIONS_ARCHIVE).read_text().splitlines()[0]
        assert header == "split,index,prediction", folder
    gold = {"cola": [int(line.split("\t")[1]) for line in (real_glue / "CoLA" / "dev.tsv").read_text().splitlines()],
            "stsb": [float(line.split("\t")[-1]) for line in
                     (real_glue / "STS-B" / "dev.tsv").read_text().splitlines()[1:]]}
    for task, labels in gold.items():  # a class label and a score, parsed here from the GLUE files
        original = next(f for f in committed_runs() if f"/{task}/" in str(f))
        read_back = RunFolder(original).predictions()
        assert read_back["index"].tolist() == list(range(len(labels)))
        assert read_back["label"].tolist() == labels
        run = tmp_path / task  # archiving a run's TSV gives the committed file back
        shutil.copytree(original, run)
        read_back.to_csv(run / PREDICTIONS, sep="\t", index=False)
        (run / PREDICTIONS_ARCHIVE).unlink()
        assert RunFolder(run).archive_predictions() and not (run / PREDICTIONS).exists()
        assert (run / PREDICTIONS_ARCHIVE).read_bytes() == (original / PREDICTIONS_ARCHIVE).read_bytes()


def test_without_the_data_folder_the_report_says_where_the_labels_come_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    assert report(["--runs", "docs/results/runs", "--out", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the gold labels of docs/results/runs/") and "(GLUE_DIR or data.glue_dir=" in line


@each_page
def test_the_committed_runs_hold_no_path_of_the_machine(page):
    for folder in committed_runs(page):
        for path in folder.rglob("*"):
            if path.is_file():
                text = path.read_text()
                for marker in ("/work/", "/root/", "/home/", "/tmp/", "site-packages", "/Users/"):
                    assert marker not in text, f"{path.relative_to(ROOT)} holds {marker}"


@pytest.mark.slow
def test_relaunching_the_study_on_the_committed_runs_launches_nothing(real_glue, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(RUNS, runs)  # a relaunch appends to launches.jsonl: not in the checkout
    proc = run_train("experiment=reference_study", f"hydra.sweep.dir={runs}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    n = len(committed_runs())
    assert f"{n} of {n} job(s) already finished: not launched (nothing to do)" in out
    assert f"0 finished, {n} skipped (already finished), 0 failed" in out


@each_page
def test_the_committed_runs_predictions_pass_the_check_against_their_records(page, real_glue):
    """Each run's archived predictions with the labels read back from GLUE_DIR (the dev files; the
    training file for the held-out rows): the rows its record counts and the metrics it recorded,
    recomputed (records without a fingerprint of the labels: the metric check alone)."""
    for folder in committed_runs(page):
        run = RunFolder(folder)
        frame = run.predictions()  # checked: ValueError on a mismatch
        assert len(frame) == sum(run.record().n_dev.values())
        if run.record().heldout:
            assert not (folder / HELDOUT_PREDICTIONS).exists()
            assert (folder / HELDOUT_ARCHIVE).read_text().splitlines()[0] == "split,index,prediction"
            assert len(run.predictions(heldout=True)) == run.record().heldout["n"]
