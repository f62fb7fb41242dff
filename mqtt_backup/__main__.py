from mqtt_backup.cli import main

raise SystemExit(main())
