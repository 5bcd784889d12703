"""Layer 2, what a task is: the task class and its configs, the readers of data files, the benchmarks (imports core)."""
