"""The pure quality model: measurements in, an Assessment out. No I/O here."""

from netcheck.quality.assess import assess
from netcheck.quality.thresholds import DEFAULT_THRESHOLDS, Threshold, apply_overrides

__all__ = ["assess", "DEFAULT_THRESHOLDS", "Threshold", "apply_overrides"]
