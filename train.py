"""Fine-tune one model on one GLUE task: ``python train.py pooling=maxpool_mha task=rte``.

Sweeps: ``python train.py -m seed=1,2,3 pooling=cls,maxpool_mha``. The logic lives in
``maxpoolbert.run``; this file only hands Hydra's config to it.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

_single_run = False
# Folders taken from the environment, made absolute against the folder the user started in, once,
# here: a relative GLUE_DIR then means the same folder in every job of a sweep, a SLURM job and a
# later `predict` (run configs store ${oc.env:GLUE_DIR,null}, never a path of this machine).
PATH_VARIABLES = ("GLUE_DIR", "SUPERGLUE_DIR", "MAXPOOLBERT_CACHE")


def absolute_path_variables() -> None:
    for name in PATH_VARIABLES:
        value = os.environ.get(name)
        if value and not os.path.isabs(os.path.expanduser(value)):
            os.environ[name] = os.path.abspath(os.path.expanduser(value))


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from maxpoolbert.run import main as run_main  # heavy imports after Hydra has parsed the CLI

    global _single_run
    _single_run = HydraConfig.get().mode == RunMode.RUN
    return run_main(cfg)


if __name__ == "__main__":
    from maxpoolbert.errors import UserError, fail
    from maxpoolbert.schema import additions, check_command_line

    absolute_path_variables()
    try:  # a misspelt config name or Lightning flag: one line, before Hydra composes anything
        check_command_line(sys.argv[1:])
    except UserError as err:
        fail(err)
    sys.argv[1:] = additions(sys.argv[1:])  # a misspelt key of ours: refused in one line (schema.check)
    main()
    if _single_run:  # finished and written: skip the interpreter's ~1 s teardown of torch & co.
        from maxpoolbert.run import exit_now

        exit_now()
