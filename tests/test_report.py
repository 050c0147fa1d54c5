"""dshift.report: model.json round trip and the plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import FEATURES
from dshift.errors import UserError
from dshift.report import load_model, model_dict, plot_png


def test_model_round_trip_and_validation():
    m = model_dict(centers=np.eye(3), bandwidth=1.5, feature_columns=FEATURES,
                   params={"cluster_all": False, "bin_seeding": True}, n_iter=4, label_column="cluster")
    loaded = load_model(json.loads(json.dumps(m)), "m.json")
    np.testing.assert_array_equal(loaded["cluster_centers"], np.eye(3))
    assert loaded["cluster_all"] is False and loaded["bandwidth"] == 1.5
    for broken, match in [({**m, "bandwidth": 0}, "bandwidth must be a number > 0"),
                          ({**m, "feature_columns": ["a"]}, "must list 3 column names"),
                          ({k: v for k, v in m.items() if k != "cluster_centers"}, "missing key 'cluster_centers'"),
                          ([], "expected a JSON object")]:
        with pytest.raises(UserError, match=match):
            load_model(broken, "m.json")


@pytest.mark.parametrize("d, xy", [(1, None), (2, None), (4, None), (3, ("c", "a"))])
def test_plot_png(d, xy):
    cols = [f"f{j}" for j in range(d)] if xy is None else ["a", "b", "c"]
    rng = np.random.default_rng(0)
    sample = pd.DataFrame(rng.normal(size=(200, d)), columns=cols)
    sample["cluster"] = rng.integers(-1, 3, 200)
    png = plot_png(sample, rng.normal(size=(3, d)), feature_columns=cols, label_column="cluster", bandwidth=0.5,
                   x=xy[0] if xy else None, y=xy[1] if xy else None)
    assert png.startswith(b"\x89PNG")
