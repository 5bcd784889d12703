"""Layer 2, what a task is: the task class and its configs, the benchmarks and their data folders, the readers of data files (imports core)."""
