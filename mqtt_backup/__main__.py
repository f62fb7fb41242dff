from mqtt_backup.startup import entry

entry()
