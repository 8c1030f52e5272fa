"""Executes notebooks with nbclient, the reference the TypeScript runner is compared against.

Usage: python nbclient_reference.py OUT_DIR CWD NOTEBOOK...
Writes OUT_DIR/<name> for each notebook; a cell error ends that notebook's run, as in the runner.
"""
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> None:
    out_dir, cwd, *paths = sys.argv[1:]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", coalesce_streams=True, resources={"metadata": {"path": cwd}}
        )
        try:
            client.execute()
        except CellExecutionError:
            pass
        nbformat.write(nb, str(Path(out_dir) / Path(path).name))


if __name__ == "__main__":
    main()
