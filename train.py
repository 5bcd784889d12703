"""Fine-tune one model on one GLUE task: ``python train.py pooling=maxpool_mha task=rte``.

Sweeps: ``python train.py -m seed=1,2,3 pooling=cls,maxpool_mha``. The logic lives in
``maxpoolbert.run``; this file only hands Hydra's config to it.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from maxpoolbert.run import main as run_main  # heavy imports after Hydra has parsed the CLI

    return run_main(cfg)


if __name__ == "__main__":
    main()
