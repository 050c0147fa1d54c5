"""Write the demo data set: Gaussian blobs as a multi-file Parquet data set.

Each file is generated independently (one Dask task per file) from
``numpy.random.default_rng([seed, file_index])``, so the data are reproducible whatever the
number of workers. Columns: ``id`` (int64, 0..rows-1), the features (``x, y, z`` for 3-D
centers, ``x0, x1, ...`` otherwise) and ``blob`` (the index of the generating center).

The data set is staged and moved into place like any dshift output, so a killed run never
leaves half a data set that a later run would mistake for the input.

Usage::

    python -m dshift.pipelines.make_demo_data data/demo --rows 1000000 --files 8
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from typing import Optional, Sequence

import dask
import fsspec
import numpy as np
import pandas as pd

from dshift.config import DemoConfig
from dshift.io.outputs import OutputStage, write_bytes

__all__ = ["feature_names", "make_file", "make_demo_data", "exists"]

logger = logging.getLogger("dshift.batch")


def feature_names(d: int) -> list[str]:
    """Feature column names for ``d`` dimensions."""
    return ["x", "y", "z"][:d] if d <= 3 else [f"x{j}" for j in range(d)]


def make_file(index: int, start: int, rows: int, centers: np.ndarray, std: float, seed: int) -> pd.DataFrame:
    """The rows of one file: ``rows`` points, ids from ``start``, centers drawn uniformly."""
    rng = np.random.default_rng([seed, index])
    blob = rng.integers(0, len(centers), size=rows)
    points = centers[blob] + rng.normal(0.0, std, size=(rows, centers.shape[1]))
    frame = pd.DataFrame(points, columns=feature_names(centers.shape[1]))
    frame.insert(0, "id", np.arange(start, start + rows, dtype=np.int64))
    frame["blob"] = blob.astype(np.int64)
    return frame


def _write_file(url: str, storage_options: dict, *args) -> int:
    frame = make_file(*args)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_bytes(url, buf.getvalue(), storage_options)
    return len(frame)


def exists(url: str, storage_options: Optional[dict] = None) -> bool:
    """Whether the input path (file, directory or glob) already exists."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return bool(fs.glob(path)) if any(c in path for c in "*?[") else fs.exists(path)


def make_demo_data(url: str, demo: DemoConfig, storage_options: Optional[dict] = None) -> int:
    """Write the demo data set to ``url`` (a directory); computes on the current Dask scheduler.

    Parameters
    ----------
    url : str
        Target directory (must not exist).
    demo : DemoConfig
        rows, centers, std, seed, files.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    int
        Rows written.
    """
    centers = np.asarray(demo.centers, dtype=np.float64)
    n_files = min(demo.files, demo.rows)
    sizes = [demo.rows // n_files + (1 if i < demo.rows % n_files else 0) for i in range(n_files)]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    logger.info("demo: writing %s rows around %d centers to %s (%d files)", f"{demo.rows:,}", len(centers), url, n_files)
    stage = OutputStage(url, storage_options, overwrite=False, what="input.path")
    with stage:
        tasks = [
            dask.delayed(_write_file)(stage.url_for(f"part.{i:05d}.parquet"), storage_options or {},
                                      i, int(starts[i]), sizes[i], centers, demo.std, demo.seed)
            for i in range(n_files)
        ]
        written = sum(dask.compute(*tasks))
        stage.commit()
    return int(written)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: write the demo data set with the local threaded scheduler."""
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(prog="python -m dshift.pipelines.make_demo_data",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("path", help="target directory (must not exist)")
    parser.add_argument("--rows", type=int, default=defaults.rows)
    parser.add_argument("--files", type=int, default=defaults.files)
    parser.add_argument("--std", type=float, default=defaults.std)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    demo = DemoConfig(rows=args.rows, files=args.files, std=args.std, seed=args.seed)
    make_demo_data(args.path, demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
