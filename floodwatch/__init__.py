"""floodwatch: the shared kernel every stage imports.

Vocabulary (station ids, readings, alert levels), settings, the station
registry, the error tree and Bangkok time formatting live here. Nothing in
this package imports a stage (ingest, store, models, alerts, the page).
"""

__version__ = "0.1.0"
