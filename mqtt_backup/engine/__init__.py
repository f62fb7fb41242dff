"""Everything that talks to rclone. Knows nothing of MQTT."""
