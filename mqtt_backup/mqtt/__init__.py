"""The MQTT side: the session with the broker, publishing, commands, topics."""
