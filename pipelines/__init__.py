"""Batch jobs composed from dshift's stages.

- :mod:`pipelines.cluster_parquet` — ``dshift run``: fit mean shift on a Parquet data set,
  write labels, model.json, report.json and clusters.png.
- :mod:`pipelines.predict_parquet` — ``dshift predict``: label new data with a model.json.
- :mod:`pipelines.make_demo_data` — the demo data set (Gaussian blobs).
"""
