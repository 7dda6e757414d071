"""Detector models: the contract every model keeps, and MODELS, the only place one is registered.

A model is one module `detector/models/<name>.py` plus one line in MODELS; `detector.model:
<name>` in the config selects it (the config refuses names that are not in MODELS). The module
provides (see `Model`):

- `FEATURES`: the columns of `detector.features.compute` it reads; training, scoring and the
  backtest compute exactly these (at the series' step, one- or two-sided as the series needs).
- `train(features, settings) -> fitted`: fit one series on its training rows (already chosen by
  `detector.training.select`: the training window minus past incidents). Raise `NotEnoughData`
  when the rows cannot make a model; the series then claims nothing yet. The fitted object is
  pickled into the series' artifact and has `rows` and `threshold` (`Fitted`).
- `score(fitted, features) -> pd.Series`: one score per input row, aligned with its index,
  higher = more anomalous, in [0, 1]; a row is an anomaly at score >= fitted.threshold. NaN for
  a row the model cannot judge (non-finite features). The live detector's severity bands
  (`detector.reasons.SEVERITIES`) read the score on a scale where the threshold is 0.5.
- `explain(fitted, row) -> dict[str, float]`: why a row scored as it did, per feature it read:
  0 is usual, 1 the edge of its usual training range, more is further out. `detector.reasons`
  names the largest in the series' units ("latency 900 ms, usually 82–122 ms").
- `versions() -> dict[str, str]`: the libraries (name -> version) the fitted object's pickle
  depends on. They are saved in the artifact, and a file saved under other versions is
  refused (retrained), as is one saved by another model.

Models import numpy, pandas and their own libraries; none imports `upwatch.config` (settings
arrive as `Settings`) or a detector service module. MODELS holds module paths, imported on
first use (`get`), so that `import upwatch.config`, which validates `detector.model` against
MODELS, stays free of pandas and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import cast

from detector.models.contract import MEMBERS, Fitted, Model, NotEnoughData, Settings

__all__ = ["DEFAULT", "MODELS", "Fitted", "Model", "NotEnoughData", "Settings", "get"]

MODELS: dict[str, str] = {
    "isolation_forest": "detector.models.isolation_forest",
}
DEFAULT = "isolation_forest"


def get(name: str) -> Model:
    """The registered model `name`; KeyError naming the known ones, TypeError if its module breaks the contract."""
    if name not in MODELS:
        raise KeyError(f"unknown detector model {name!r} (known: {', '.join(sorted(MODELS))})")
    module = importlib.import_module(MODELS[name])
    missing = [m for m in MEMBERS if not hasattr(module, m)]
    if missing:
        raise TypeError(f"detector model {name!r} ({module.__name__}) lacks {', '.join(missing)}")
    return cast(Model, module)
