"""The pure quality model: measurements in, an Assessment out. No I/O here."""

from netcheck.quality.assess import assess
from netcheck.quality.metrics import METRICS, Metric
from netcheck.quality.thresholds import apply_overrides

__all__ = ["assess", "METRICS", "Metric", "apply_overrides"]
