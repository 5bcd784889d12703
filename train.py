"""Fine-tune one model on one GLUE task: ``python train.py pooling=maxpool_mha task=rte``.

Sweeps: ``python train.py -m seed=1,2,3 pooling=cls,maxpool_mha``. The logic lives in
``maxpoolbert.run``; this file only hands Hydra's config to it.
"""

import hydra
from omegaconf import DictConfig

_single_run = False


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from maxpoolbert.run import main as run_main  # heavy imports after Hydra has parsed the CLI

    global _single_run
    _single_run = HydraConfig.get().mode == RunMode.RUN
    return run_main(cfg)


if __name__ == "__main__":
    main()
    if _single_run:  # finished and written: skip the interpreter's ~1 s teardown of torch & co.
        from maxpoolbert.run import exit_now

        exit_now()
