"""Save and load one series' model with its metadata; refuse files that do not fit this code.

A file is written to a temporary name and moved into place with os.replace, so a
reader never sees half a file. Loading raises ArtifactError for anything unusable
(truncated, not ours, other library versions, other features); the caller retrains.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import sklearn

logger = logging.getLogger(__name__)

FORMAT = 3  # 2: models carry a per-feature envelope; 3: and the step their features were scaled to


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
    sklearn_version: str = sklearn.__version__
    joblib_version: str = joblib.__version__
    format: int = FORMAT


def path_for(model_dir: Path, series: str) -> Path:
    """One file per series; the name is made safe for any filesystem."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in series)
    return model_dir / f"{safe}-{zlib.crc32(series.encode()):08x}.joblib"


def save(artifact: Artifact, path: Path) -> None:
    """Write atomically: temp file in the same directory, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            joblib.dump(artifact.__dict__, handle, compress=3)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, model_name: str, features: tuple[str, ...]) -> Artifact:
    """Read an artifact written by save(); raise ArtifactError if it is unreadable or does not match."""
    try:
        fields = joblib.load(path)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, ImportError,
            IndexError, pickle.UnpicklingError, zlib.error) as e:
        raise ArtifactError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an upwatch detector artifact of format {FORMAT}")
    problems = [
        f"{key} {fields.get(key)!r} != {want!r}"
        for key, want in (
            ("model_name", model_name),
            ("features", tuple(features)),
            ("sklearn_version", sklearn.__version__),
        )
        if fields.get(key) != want
    ]
    if problems:
        raise ArtifactError(f"{path}: incompatible: {'; '.join(problems)}")
    try:
        return Artifact(**fields)
    except TypeError as e:
        raise ArtifactError(f"{path}: unexpected fields ({e})") from e
