from mqtt_backup.cli import entry

entry()
