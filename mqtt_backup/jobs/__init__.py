"""Running jobs: the executor, job state, run history and per-job locks."""
