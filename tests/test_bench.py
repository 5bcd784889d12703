"""scripts/bench.py's arithmetic: FLOP counting, ratios, target verdicts and the report tables,
on synthetic timings (the benchmark itself is `make bench`; timings are never asserted)."""

import importlib.util
import os

import pytest

from .conftest import ROOT, config_names

spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_training_flops_counts_real_tokens_of_the_embedded_model():
    from transformers import AutoTokenizer

    from maxpoolbert.model.encoders import resolve

    rows = {"text_a": ["a short one.", "a somewhat longer sentence with more words in it", "x"],
            "text_b": ["and its pair.", "pair", "another pair here"], "label": [0, 1, 0]}
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(resolve(bench.MODEL))(
        rows["text_a"], rows["text_b"])["input_ids"]]
    got = bench.training_flops(rows, epochs=2, max_length=128)
    # MiniLM-L6: 6 layers, hidden 384, intermediate 1536; per layer Q/K/V/O (4 H^2 + 4 H), FFN
    # (2 H I + I + H), two LayerNorms (4 H); plus the pooler (H^2 + H) and a 2-way classifier.
    h, i, n_layers = 384, 1536, 6
    n = n_layers * (4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h) + h * h + h + 2 * h + 2
    assert got["non_embedding_params"] == n
    assert got["tokens"] == sum(lengths) and got["sum_len_sq"] == sum(x * x for x in lengths)
    assert got["flops"] == 2 * (6 * n * sum(lengths) + 12 * n_layers * h * sum(x * x for x in lengths))
    assert got["padded_tokens_128"] == 3 * 128


def run(train_s, process_s, steps=10):
    return {"train_s": train_s, "process_wall_s": process_s, "steps": steps, "step_s": train_s / steps,
            "samples_per_s": 320 / train_s, "first_step_s": 7.0, "dev_metric": 0.5, "peak_rss_mb": 1000.0,
            "other_cores": 0.01, "pooling_params": 0, "n_train": 320, "epochs": 1}


def synthetic_report():
    flops = {"flops": 2e12, "tokens": 1000, "mean_len": 10.0, "padded_tokens_128": 4096}
    cls_rte = run(30.0, 40.0)
    return {
        "command": "python scripts/bench.py", "started": "now", "total_s": 60.0,
        "machine": {"cpu": "cpu", "cores": 2, "torch": "t", "torch_threads": 2, "transformers": "x",
                    "lightning": "l", "python": "3"},
        "settings": {"rows": 512, "epochs": 1, "batch_size": 32, "lr": 2e-5, "weight_decay": 0.01,
                     "warmup_ratio": 0.1, "max_length": 128, "seed": 1},
        "matmul": {"start": {"a": 1e11}, "end": {"a": 0.9e11}, "peak": 1e11},
        "load_average": {"start": 0.1, "end": 0.2},
        "tasks": {
            "rte": {"metric": "accuracy", "n_train": 512, "n_dev": 277, "flops": flops, "runs": {
                "ours": run(25.0, 40.0), "ours_warm": cls_rte, "hf_pad128": run(50.0, 60.0) | {"peak_rss_mb": 1500.0},
                "hf_dynamic": run(45.0, 55.0), "hf_grouped": run(27.5, 42.0)}},
            "cola": {"metric": "mcc", "n_train": 512, "n_dev": 1043, "flops": flops, "runs": {
                "ours": run(5.0, 15.0), "ours_warm": run(5.0, 14.0), "hf_pad128": run(40.0, 44.0),
                "hf_dynamic": run(7.0, 18.0), "hf_grouped": run(5.0, 17.0)}},
        },
        "poolings": {"task": "rte", "runs": {"cls": cls_rte, "maxpool_mha": run(34.5, 45.0)}},
        "variants": {"task": "rte", "runs": {"default": cls_rte, "bf16": run(15.0, 25.0)}},
    }


def test_ratios_and_verdicts_from_synthetic_timings():
    report = bench.derive(synthetic_report())
    rte, cola = report["tasks"]["rte"], report["tasks"]["cola"]
    assert rte["ideal_s"] == pytest.approx(20.0)  # 2e12 FLOPs at 1e11 FLOP/s
    assert rte["runs"]["ours"]["efficiency"] == pytest.approx(0.8)
    assert rte["runs"]["hf_grouped"]["ours_speedup_train"] == pytest.approx(1.1)
    assert rte["runs"]["hf_grouped"]["ours_speedup_process"] == pytest.approx(1.05)
    assert cola["runs"]["hf_pad128"]["ours_speedup_process"] == pytest.approx(44 / 15)
    assert report["poolings"]["runs"]["maxpool_mha"]["step_ratio"] == pytest.approx(1.15)
    assert report["variants"]["runs"]["bf16"]["train_ratio"] == pytest.approx(0.5)
    assert report["variants"]["runs"]["bf16"]["efficiency"] == pytest.approx(20 / 15)
    lines = bench.summary(report)
    assert "- Target whole process >= 3x run_glue defaults on CoLA: 2.93x (missed)." in lines
    assert "- Target whole process >= 1.25x the strongest Trainer (dynamic + grouped) on RTE: 1.05x (missed)." in lines
    assert "- Target whole process >= 1.25x the strongest Trainer (dynamic + grouped) on CoLA: 1.13x (missed)." in lines
    assert "- Target peak RSS at or below the strongest Trainer's on RTE: 1000 against 1000 MB (met)." in lines
    assert "- Target efficiency >= 0.6 on RTE: 0.800 (met)." in lines
    assert "- maxpool_mha step time 1.15x cls (target <= 1.10x: missed)." in lines
    assert ("- RTE peak RSS: ours 1000 MB (warm cache 1000 MB), HF Trainer 1500 / 1000 / 1000 MB "
            "(pad 128 / dynamic / dynamic + grouped).") in lines


def test_markdown_has_every_table():
    text = bench.markdown(bench.derive(synthetic_report()))
    for heading in ("## Summary", "## RTE", "## CoLA", "## Pooling overhead", "## Settings of ours", "## How"):
        assert heading in text
    assert "| bf16 | `trainer.precision=bf16-mixed` | 15.0 | 0.50x | 25.0 | 0.62x |" in text
    assert "| HF Trainer, dynamic + group_by_length | 27.5 | 11.6 | 1.10x | 42.0 | 1.05x |" in text


def test_repetitions_become_medians_with_their_spread_and_a_before_row():
    """--reps: each system's row holds the medians of its repetitions (min / median / max beside);
    --before: the earlier commit's row and the before -> now line."""
    report = synthetic_report()
    rte = report["tasks"]["rte"]
    reps = [{k: dict(v) for k, v in rte["runs"].items()} for _ in range(3)]
    for i, r in enumerate(reps):
        r["ours"].update(process_wall_s=40.0 + 2 * i, peak_rss_mb=1000.0 + 100 * i, other_cores=0.1 * i)
        r["ours_before"] = run(25.0, 50.0 + i) | {"peak_rss_mb": 1200.0}
    rte["reps"] = reps
    rte["runs"] = {system: bench.median_run([r[system] for r in reps]) for system in reps[0]}
    report["before"] = {"ref": "abc123", "commit": "abc123"}
    report = bench.derive(report)
    ours = report["tasks"]["rte"]["runs"]["ours"]
    assert (ours["process_wall_s"], ours["peak_rss_mb"], ours["other_cores"]) == (42.0, 1100.0, pytest.approx(0.2))
    assert ours["spread"]["process_wall_s"] == [40.0, 42.0, 44.0]
    lines = bench.summary(report)
    assert "- RTE, now against before (abc123): whole process 1.21x as fast (51.0 -> 42.0 s), training 1.00x, " \
           "peak RSS 1200 -> 1100 MB." in lines
    text = bench.markdown(report)
    assert "| ours, cls (cold cache) | 40.0 / 42.0 / 44.0 | 25.0 / 25.0 / 25.0 | 1000 / 1100 / 1200 |" in text
    assert "| ours before (--before), cls (cold cache) | 25.0 |" in text


def test_quick_picks_small_defaults(tmp_path):
    args = bench.parse_args(["--quick", "--glue-dir", str(tmp_path)])
    assert (args.rows, args.poolings, args.variants) == (64, list(bench.QUICK_POOLINGS), list(bench.QUICK_VARIANTS))
    full = bench.parse_args(["--glue-dir", str(tmp_path), "--variants"])
    assert full.rows == 512 and full.variants == [] and full.poolings == list(bench.POOLINGS)


def test_names_come_from_configs(tmp_path):
    assert sorted(bench.POOLINGS) == [n for n in config_names("pooling") if n != "cls"]
    assert bench.POOLINGS[:3] == bench.PAPER_POOLINGS
    for name in config_names("task"):
        assert bench.parse_args(["--glue-dir", str(tmp_path), "--tasks", name]).tasks == [name]


sweep_spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "scripts" / "bench_sweep.py")
bench_sweep = importlib.util.module_from_spec(sweep_spec)
sweep_spec.loader.exec_module(bench_sweep)


def test_sweep_table_ratios_and_the_before_predictions_check():
    """scripts/bench_sweep.py's summary, on synthetic sweeps: medians, ratios over the best HF mode,
    memory over the leanest, and the run-by-run check of the earlier commit's predictions."""
    def sample(wall, rss, predictions=None):
        return {"wall_s": wall, "runs_per_hour": 10 / wall * 3600, "peak_tree_rss_mb": rss, "cpu_s": 2 * wall,
                "mean_dev_score": 0.5, "predictions": predictions or {}}
    same, other = {"a": "1", "b": "2"}, {"a": "1", "b": "3"}
    samples = {"ours_joblib_2x1": [sample(100, 5000, same), sample(110, 5100, same)],
               "before_joblib_2x1": [sample(120, 5600, same), sample(118, 5500, other)],
               "hf_2x1": [sample(150, 4800), sample(140, 4700)]}
    result = {"machine": {"cpu": "cpu", "cores": 2, "torch": "t", "transformers": "x", "lightning": "l"},
              "cpu_flags": {"avx2": True}, "args": {"task": "rte", "rows": 256, "seeds": 5, "reps": 2},
              "command": "python scripts/bench_sweep.py", "load_before": 0.1, "load_after": 0.2, "samples": samples,
              "summary": {m: bench_sweep.summarise(s) for m, s in samples.items()}}
    text = bench_sweep.markdown(result)
    assert "before_joblib_2x1 3 of 4 identical" in text  # a differing run is counted, not hidden
    hf, ours = 10 / 145 * 3600, 10 / 105 * 3600
    assert f"ours_joblib_2x1 {ours / hf:.2f}x" in text and f"ours_joblib_2x1 {5050 / 4750:.2f}x (hf_2x1)" in text
    assert bench_sweep.parse_args(["--glue-dir", ".", "--before", "HEAD"]).modes == [
        "ours_joblib_2x1", "ours_basic_1x2", "before_joblib_2x1", "hf_2x1", "hf_1x2"]


def test_an_earlier_checkout_runs_its_own_package(tmp_path):
    """--before: the earlier commit's worktree comes first on the child's path (its package, not the
    installed one); this checkout's children get no such entry."""
    env = bench.child_env(str(tmp_path), tmp_path / "before")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "before")
    assert env["GLUE_DIR"] == str(tmp_path.resolve()) and env["HF_HUB_OFFLINE"] == "1"
    assert bench.child_env(str(tmp_path)).get("PYTHONPATH") == os.environ.get("PYTHONPATH")
