"""When jobs run: schedules, cron triggers, the wall clock and the scheduler."""
