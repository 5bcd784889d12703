"""Hydra plugins of maxpoolbert (Hydra only instantiates sweepers and launchers from the
``hydra_plugins`` namespace): the logic lives in :mod:`maxpoolbert.launch.sweeps`."""
