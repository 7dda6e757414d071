"""Save and load one series' model with its metadata; refuse files that do not fit this code.

A file is written to a temporary name and moved into place with os.replace, so a
reader never sees half a file. Loading raises ArtifactError for anything unusable
(truncated, not ours, saved by another model than the config selects, other library
versions, other features); the caller retrains. Format 3 files (before models had a
contract) still load.

From format 5 a file is MAGIC and a zlib-compressed pickle (protocol 4) written by the standard
library's C pickler: joblib's pickler is pure Python and spent 40 ms of every training (a 7-day
15 s forest is 15,000 objects), and its loader 35 ms of every model load; the bytes pickled
are the same objects, so a loaded model scores exactly as the saved one. Formats 3 and 4,
written with joblib.dump, are read with joblib.load.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from detector.models import Model

logger = logging.getLogger(__name__)

# 2: models carry a per-feature envelope; 3: and the step their features were scaled to;
# 4: step, sidedness and the model's library versions are the artifact's, not the model's;
# 5: the file is MAGIC + zlib(pickle) instead of joblib's container.
FORMAT = 5
READABLE = (3, 4, FORMAT)
MAGIC = b"upwatch-artifact\n"
# zlib level 3: the size joblib's compress=3 gave (about 210 kB for a 7-day 15 s model) in 8 ms.
COMPRESS_LEVEL = 3
# Protocol 4, not 5: protocol 5 unpickles arrays as views of the bytes read, which held about 150 kB
# more per loaded model (1,040 vs 890 kB; joblib's loader: 930 kB).
PROTOCOL = 4


class ArtifactError(Exception):
    """The artifact cannot be used; retrain the series."""


@dataclass(frozen=True)
class Artifact:
    """A fitted model and what is known about it."""

    model: Any
    model_name: str
    series: str
    version: int
    trained_at: datetime
    rows: int
    features: tuple[str, ...]
    threshold: float
    step: pd.Timedelta  # the cadence features were scaled to; scoring uses the same
    two_sided: bool  # features counted deviations either way (features.compute); scoring does the same
    versions: dict[str, str]  # the model's versions() when it was trained
    # Usual (median, spread) of the total and each check phase on the training rows (detector.phases).
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    joblib_version: str = joblib.__version__
    format: int = FORMAT


def path_for(model_dir: Path, series: str) -> Path:
    """One file per series; the name is made safe for any filesystem."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in series)
    return model_dir / f"{safe}-{zlib.crc32(series.encode()):08x}.joblib"


LEFTOVER_AGE_S = 3600.0


def sweep(model_dir: Path, older_than_s: float = LEFTOVER_AGE_S) -> int:
    """Remove temporary files save() left behind (a worker stopped mid-save); how many.

    Only those older than `older_than_s`: another detector sharing the directory may be saving now."""
    removed = 0
    cutoff = time.time() - older_than_s
    try:
        candidates = list(model_dir.glob(".*.joblib.*"))
    except OSError:
        return 0
    for leftover in candidates:
        try:
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to remove: the next start tries again
    return removed


def save(artifact: Artifact, path: Path) -> None:
    """Write atomically: temp file in the same directory, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(MAGIC)
            handle.write(zlib.compress(pickle.dumps(artifact.__dict__, protocol=PROTOCOL), COMPRESS_LEVEL))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, model_name: str, model: Model) -> Artifact:
    """Read an artifact written by save() for `model_name` (the `model` the config selects);
    raise ArtifactError if it is unreadable or does not match."""
    try:
        fields = _read(path)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, ImportError,
            IndexError, pickle.UnpicklingError, zlib.error) as e:
        raise ArtifactError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(fields, dict) or fields.get("format") not in READABLE:
        raise ArtifactError(f"{path}: not an upwatch detector artifact of format {FORMAT}")
    if fields["format"] == 3:
        fields = _from_format_3(path, fields)
    if fields.get("model_name") != model_name:
        raise ArtifactError(f"{path}: saved by model {fields.get('model_name')!r}, the config selects {model_name!r}")
    problems = [
        f"{key} {fields.get(key)!r} != {want!r}"
        for key, want in (("features", tuple(model.FEATURES)), ("versions", model.versions()))
        if fields.get(key) != want
    ]
    if problems:
        raise ArtifactError(f"{path}: incompatible: {'; '.join(problems)}")
    try:
        return Artifact(**fields)
    except TypeError as e:
        raise ArtifactError(f"{path}: unexpected fields ({e})") from e


def _read(path: Path) -> Any:
    with path.open("rb") as handle:
        head = handle.read(len(MAGIC))
        if head == MAGIC:
            return pickle.loads(zlib.decompress(handle.read()))  # noqa: S301 -- our own model_dir, as joblib.load was
    return joblib.load(path)  # formats 3 and 4


def _from_format_3(path: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Format 3 was written by the one model there was, the Isolation Forest, which kept step and sidedness."""
    out = {k: v for k, v in fields.items() if k != "sklearn_version"}
    model = fields.get("model")
    step = getattr(model, "step", None)
    if not isinstance(step, pd.Timedelta):
        raise ArtifactError(f"{path}: format 3 artifact without the step its model was trained at")
    return out | {
        "format": 4,  # the fields of format 4 (format 5 changed only the file around them)
        "step": step,
        "two_sided": getattr(model, "two_sided", False),
        "versions": {"scikit-learn": fields.get("sklearn_version")},
    }
