"""The MQTT test helpers, under the name the tests have always imported them by.

They live in tests/support/mqtt.py, shared with the benchmarks; import them from there.
"""

from tests.support.mqtt import (
    Collector,
    Received,
    retained_snapshot,
    unique_base,
    unique_topics,
)

__all__ = ["Collector", "Received", "retained_snapshot", "unique_base", "unique_topics"]
