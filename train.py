"""Fine-tune one model on one GLUE task: ``python train.py pooling=maxpool_mha task=rte``.

Sweeps: ``python train.py -m seed=1,2,3 pooling=cls,maxpool_mha``. The logic lives in
``maxpoolbert.launch.run``; this file only hands Hydra's config and the job's context
(:class:`maxpoolbert.runs.context.RunContext`) to it. From Python: ``maxpoolbert.train([...])``.
"""

import sys

import hydra
from omegaconf import DictConfig

from maxpoolbert.launch.entry import PATH_VARIABLES, absolute_path_variables  # noqa: F401 - the tests' helper too

_single_run = False


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from maxpoolbert.launch.run import (
        main as run_main,  # heavy imports after Hydra has parsed the CLI
    )
    from maxpoolbert.runs.context import RunContext

    global _single_run
    ctx = RunContext.from_hydra(argv=tuple(sys.argv))
    _single_run = not ctx.multirun
    return run_main(cfg, ctx)


if __name__ == "__main__":
    from maxpoolbert.config.schema import additions, check_command_line
    from maxpoolbert.core.errors import UserError, fail

    absolute_path_variables()
    try:  # a misspelt config name or Lightning flag: one line, before Hydra composes anything
        check_command_line(sys.argv[1:])
    except UserError as err:
        fail(err)
    sys.argv[1:] = additions(sys.argv[1:])  # a misspelt key of ours: refused in one line (schema.check)
    main()
    if _single_run:  # finished and written: skip the interpreter's ~1 s teardown of torch & co.
        from maxpoolbert.launch.run import exit_now

        exit_now()
