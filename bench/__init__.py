"""Benchmarks of mqtt-backup against bare rclone and a real mosquitto: ``python -m bench``."""
