"""A fitted model as plain named arrays and back, so the shell can keep it in a file.

Pure: no I/O here. ``scheduler/forecast_job.py`` writes the arrays with
``numpy.savez`` (no pickles: a model file cannot run code when loaded) and
reads them back after a restart, so the forecast process does not need a full
refit to issue its first forecast.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, is_dataclass

import numpy as np

from floodwatch.errors import ForecastError
from floodwatch.models._forecast import ForecastModel

FORMAT = 1
"""Bumped whenever a field changes meaning: an older file is then refused (and the model refitted)."""


def model_to_arrays(model: ForecastModel) -> dict[str, np.ndarray]:
    """Every field of a :class:`ForecastModel` (nested dataclasses flattened as ``a.b``) as an array.

    Returns
    -------
    dict of str to ndarray
        Includes ``__format__`` and ``__layout__`` (a JSON description of scalars,
        strings and absent parts) so :func:`model_from_arrays` can rebuild it exactly.
    """
    arrays: dict[str, np.ndarray] = {}
    layout: dict[str, str] = {}

    def put(prefix: str, value) -> None:
        if value is None:
            layout[prefix] = "none"
        elif is_dataclass(value):
            layout[prefix] = "dataclass"
            for f in fields(value):
                put(f"{prefix}.{f.name}", getattr(value, f.name))
        elif isinstance(value, tuple):
            layout[prefix] = "strings"
            arrays[prefix] = np.asarray(value, dtype=str)
        elif isinstance(value, (float, int, np.floating, np.integer)):
            layout[prefix] = "float" if isinstance(value, (float, np.floating)) else "int"
            arrays[prefix] = np.asarray(value)
        else:
            layout[prefix] = "array"
            arrays[prefix] = np.asarray(value)

    for f in fields(model):
        put(f.name, getattr(model, f.name))
    arrays["__format__"] = np.asarray(FORMAT)
    arrays["__layout__"] = np.asarray(json.dumps(layout))
    return arrays


def _dataclass_of(annotation) -> type | None:
    """The dataclass type an annotation names (``TideFit | None`` -> ``TideFit``), if any."""
    if isinstance(annotation, type) and is_dataclass(annotation):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and is_dataclass(arg):
                return arg
    return None


def model_from_arrays(arrays) -> ForecastModel:
    """Rebuild the model written by :func:`model_to_arrays` (a dict or an ``np.load`` result).

    Raises
    ------
    ForecastError
        If the arrays are not a model of this format (the caller should refit).
    """
    try:
        version = int(np.asarray(arrays["__format__"]))
        layout = json.loads(str(np.asarray(arrays["__layout__"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise ForecastError("not a floodwatch forecast model file; fit again") from exc
    if version != FORMAT:
        raise ForecastError(f"forecast model file has format {version}, this floodwatch reads {FORMAT}; fit again")

    def build(cls: type, prefix: str):
        values: dict[str, typing.Any] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            key = f"{prefix}{f.name}"
            kind = layout.get(key)
            if kind is None:
                raise ForecastError(f"forecast model file lacks {key!r}; fit again")
            if kind == "none":
                values[f.name] = None
            elif kind == "dataclass":
                sub = _dataclass_of(hints[f.name])
                if sub is None:
                    raise ForecastError(f"forecast model file has an unexpected part {key!r}; fit again")
                values[f.name] = build(sub, key + ".")
            elif kind == "strings":
                values[f.name] = tuple(str(v) for v in np.asarray(arrays[key]).reshape(-1))
            elif kind == "float":
                values[f.name] = float(np.asarray(arrays[key]))
            elif kind == "int":
                values[f.name] = int(np.asarray(arrays[key]))
            else:
                values[f.name] = np.array(arrays[key])
        return cls(**values)

    return build(ForecastModel, "")
