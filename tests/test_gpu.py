"""On a GPU: the paths researchers use first, run for real (``make test-gpu``; skipped with the
reason where CUDA is absent). Tiny models, a few steps each: every pooling with ``trainer=gpu``
(bf16 autocast) and ``speed.compile=true``, ``eval.select=best``; a run killed after its first
checkpoint and resumed on the GPU equals the uninterrupted one; an export of a GPU-trained run
reproduces its predictions; ``cls`` logits on CUDA equal ``AutoModelForSequenceClassification``'s."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from maxpoolbert.runs.folder import PREDICTIONS, RunFolder
from maxpoolbert.runs.record import RESULTS

from .conftest import config_names, run_train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

GPU = ["trainer=gpu", "model=tiny", "logger=none", "trainer.enable_progress_bar=false"]


def _record(folder):
    return json.loads((folder / RESULTS).read_text())


@pytest.fixture(scope="module")
def poolings(real_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("gpu_poolings")
    run_train("-m", *GPU, "task=rte", f"pooling={','.join(config_names('pooling'))}", "data.train_size=128",
              "trainer.max_epochs=2", "speed.compile=true", "eval.select=best", "save_model=false",
              f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp}", "hydra.sweep.subdir=${pooling.name}", cwd=tmp)
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("pooling", config_names("pooling"))
def test_every_pooling_trains_compiled_in_bf16_on_the_gpu(poolings, pooling):
    record = _record(poolings / pooling)
    assert record["device"].startswith("cuda") and record["hardware"]["gpu"]
    assert record["settings"]["trainer.precision"] == "bf16-mixed" and record["compiled"]["graphs"] >= 1
    assert record["selected"]["select"] == "best" and len(record["history"]) == 2
    assert record["selected"]["index"] == int(np.argmax([h["score"] for h in record["history"]]))
    assert np.isfinite(record["score"])


RESUMABLE = [*GPU, "task=rte", "data.train_size=256", "trainer.max_epochs=3", "optimizer.lr=1e-4", "seed=5",
             "eval.select=best", "save_model=false"]


@pytest.mark.slow
def test_killed_run_resumes_on_the_gpu_and_matches_the_uninterrupted_one(real_glue, tmp_path, cache_dir):
    from .test_rundir import kill_after_first_checkpoint

    run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/straight", cwd=tmp_path)
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(killed, [*RESUMABLE, f"data.cache_dir={cache_dir}"])
    run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={killed}", cwd=tmp_path)
    a, b = _record(tmp_path / "straight"), _record(killed)
    assert b["resumed"] and a["steps"] == b["steps"]
    assert a["history"] == b["history"] and a["metrics"] == b["metrics"]
    assert (killed / PREDICTIONS).read_bytes() == (tmp_path / "straight" / PREDICTIONS).read_bytes()


@pytest.mark.slow
def test_export_of_a_gpu_trained_run_reproduces_its_predictions(real_glue, tmp_path, cache_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from maxpoolbert.export import main as export
    from maxpoolbert.tasks.task import from_config

    run = tmp_path / "run"
    run_train(*GPU, "task=stsb", "pooling=maxpool_mha", "data.train_size=64", "trainer.max_steps=4",
              f"data.cache_dir={cache_dir}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert export([str(run), str(tmp_path / "hf")]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", trust_remote_code=True).cuda().eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    task = from_config(RunFolder(run).config().task)
    from maxpoolbert.training.data import load_split

    dev = load_split(task, "dev", {"glue": str(real_glue)})
    want = pd.read_csv(run / PREDICTIONS, sep="\t")["prediction"].to_numpy()
    got = []
    with torch.no_grad():
        for i in range(0, len(dev), 128):
            enc = tokenizer(dev["text_a"][i:i + 128], dev["text_b"][i:i + 128], truncation=True, max_length=128,
                            padding=True, return_tensors="pt").to("cuda")
            got.append(model(**enc).logits[:, 0].float().cpu().numpy())
    # the run evaluated in bf16 autocast, the export runs in fp32: bf16's precision
    np.testing.assert_allclose(np.concatenate(got), want, atol=0.05)


def test_cls_logits_on_cuda_equal_the_stock_model(tiny_checkpoint):
    from transformers import AutoModelForSequenceClassification

    from maxpoolbert.model import encoders
    from maxpoolbert.model.classifier import PooledClassifier
    from maxpoolbert.model.families import family_of
    from maxpoolbert.model.pooling import CLSPooling

    path = tiny_checkpoint("bert")
    stock = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).cuda().eval()
    encoder = encoders.pretrained(str(path))
    ours = PooledClassifier(encoder, CLSPooling(encoder.config), 3)
    family = family_of(encoder.config)
    state = stock.state_dict()
    ours.load_state_dict({k: state[family.stock_key(k)] for k in ours.state_dict()})
    ours = ours.cuda().eval()
    tokenizer = encoders.tokenizer(str(path))
    enc = tokenizer(["A man is playing a flute.", "Short."], ["Someone plays music.", "Ok"], padding=True,
                    return_tensors="pt").to("cuda")
    with torch.no_grad():
        want = stock(**enc).logits
        got = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
