"""Home Assistant: MQTT discovery and a Lovelace dashboard."""
