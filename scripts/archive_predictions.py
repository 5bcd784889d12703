"""Archive the dev predictions of every run under a folder for committing: each run's
``dev_predictions.tsv`` becomes ``dev_predictions.csv`` without the gold labels (no benchmark data
in the repository; the report reads the labels back from the task's files, GLUE_DIR).

    python scripts/archive_predictions.py docs/results/runs     # make study does it
"""

import sys

from maxpoolbert.runs.folder import find_run_folders


def main(root: str) -> None:
    archived = sum(folder.archive_predictions() for folder in find_run_folders(root))
    print(f"{root}: {archived} run(s) archived their dev predictions")


if __name__ == "__main__":
    main(sys.argv[1])
