"""A process that runs job after job gives each finished run's memory back (maxpoolbert/training/memory.py)."""

import ctypes

import pytest

from maxpoolbert.training import memory


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not memory.glibc(), reason="malloc_trim is glibc's")
def test_release_gives_freed_heap_memory_back():
    """Blocks below the mmap threshold come from the heap; freed under a live one, they stay in the
    process (the heap's top cannot shrink) until ``release`` trims them."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 * 1024, 4096  # 256 MiB of 64 KiB blocks
    blocks = [libc.malloc(block) for _ in range(count)]
    pin = libc.malloc(block)  # above them: the heap's top stays in use
    for b in blocks:
        ctypes.memset(b, 1, block)  # touched: resident
    for b in blocks:
        libc.free(b)
    held = rss_mb()
    memory.release()
    after = rss_mb()
    libc.free(pin)
    assert held - after > 128, (held, after)


@pytest.mark.parametrize("multirun", [True, False])
def test_a_sweep_job_hands_its_memory_back_before_the_next(monkeypatch, multirun):
    from omegaconf import OmegaConf

    from maxpoolbert.launch import run
    from maxpoolbert.runs.context import RunContext

    calls = []
    monkeypatch.setattr(run, "launch", lambda cfg, ctx: {"score": 0.5})
    monkeypatch.setattr(run, "between_runs", lambda: calls.append("between_runs"))
    node = OmegaConf.create({"mode": "RunMode.MULTIRUN" if multirun else "RunMode.RUN",
                             "runtime": {"output_dir": "/s/0"}, "job": {"num": 0}, "sweep": {"dir": "/s"},
                             "overrides": {"task": []}})
    assert run.main(OmegaConf.create({}), RunContext.from_hydra(node)) == 0.5
    assert calls == (["between_runs"] if multirun else [])  # a single run's process ends: nothing to hand back


@pytest.mark.parametrize("accumulate", [1, 2])
def test_gradients_are_freed_once_the_optimizer_has_stepped(real_glue, cache_dir, tmp_path, monkeypatch, accumulate):
    """Not held through the next batch's forward (Lightning frees them only after it): a batch after
    which the optimizer stepped ends without gradients; with accumulation, one that did not step
    keeps them."""
    import maxpoolbert
    from maxpoolbert.training.module import GlueModule

    seen, original = [], GlueModule.on_train_batch_end

    def probe(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        seen.append(any(p.grad is not None for p in self.model.parameters()))

    monkeypatch.setattr(GlueModule, "on_train_batch_end", probe)
    monkeypatch.chdir(tmp_path)
    maxpoolbert.train(["task=rte", "model=tiny", "data.train_size=32", "data.batch_size=8", "trainer.max_epochs=1",
                       "logger=none", "seed=3", f"data.cache_dir={cache_dir}",
                       f"trainer.accumulate_grad_batches={accumulate}"], output_dir=tmp_path / "run")
    assert seen == ([False] * 4 if accumulate == 1 else [True, False, True, False])
