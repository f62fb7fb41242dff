"""Helpers shared by the tests and the benchmarks (``python -m bench``).

A real mosquitto on 127.0.0.1 and MQTT subscribers that keep or count what they receive.
Nothing here imports pytest or mqtt_backup: the benchmarks run outside pytest, and a helper
that measured mqtt-backup with mqtt-backup's own code would measure nothing.
"""
