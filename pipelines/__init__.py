"""Batch jobs composed from dshift's stages.

Installed as :mod:`dshift.pipelines` (this folder is mapped into dshift's namespace, see
``pyproject.toml``); nothing here imports :mod:`dshift.cli`, which calls these jobs.

- :mod:`dshift.pipelines.cluster_parquet` — ``dshift run``: fit mean shift on a Parquet data set,
  write labels, model.json, report.json and clusters.png.
- :mod:`dshift.pipelines.predict_parquet` — ``dshift predict``: label new data with a model.json.
- :mod:`dshift.pipelines.make_demo_data` — the demo data set (Gaussian blobs).
"""
