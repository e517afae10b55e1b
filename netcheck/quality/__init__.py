"""The pure quality model: measurements in, an Assessment out. No I/O here.

Holds: the metric rows (`metrics`), the thresholds and their overrides (`thresholds`), `assess`, the
advice and the warnings' words (`advice`, `warnings`), the E-model (`emodel`) and the estimate
between the two people of a session (`end_to_end`).
May import: `model`, `results`, `errors` and the standard library; nothing that opens a socket, a
file or a process (tests/test_house.py walks it).
"""

from netcheck.quality.assess import assess
from netcheck.quality.metrics import CALL_ONLY_METRICS, METRICS, Metric
from netcheck.quality.thresholds import apply_overrides

__all__ = ["assess", "CALL_ONLY_METRICS", "METRICS", "Metric", "apply_overrides"]
