"""APScheduler wrapper: fires scheduled jobs, keeps next_run_at and the pause switch, catches up."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mqtt_backup.config.durations import format_duration
from mqtt_backup.config.models import AppConfig, JobConfig
from mqtt_backup.errors import JobBusy
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.state import Trigger
from mqtt_backup.scheduling import clock
from mqtt_backup.scheduling.triggers import Schedule

logger = logging.getLogger(__name__)

# Each fire blocks a pool thread for the whole run, including the wait for a free
# max_concurrent_jobs slot (the executor publishes `queued` meanwhile). So the pool must never
# be what makes a run wait: it is sized far above any job count. Threads are created lazily,
# and max_instances=1 bounds them by the number of jobs anyway.
POOL_SIZE = 1024
# A fire the scheduler could not start on time (a stalled host, a clock jump) still runs if it
# is at most this late; for jobs with catch_up any late fire runs, once (coalesce).
MISFIRE_GRACE = 60
FIRST_SCHEDULED = "first_scheduled"


def resolve_timezone(name: str | None) -> tzinfo:
    """The configured zone, else the host's local one (what cron users expect)."""
    if name:
        return ZoneInfo(name)
    from tzlocal import get_localzone

    return get_localzone()


def missed_fire(
    schedule: Schedule,
    tz: tzinfo,
    *,
    reference: datetime | None,
    last_alive: datetime | None,
    now: datetime,
) -> datetime | None:
    """The first fire time that passed while the service was down, or None.

    ``reference`` is when the job last started (or, for a job that never ran, when it was
    first scheduled); ``last_alive`` is the last sign of life of the previous service, so a fire
    that the running service skipped on purpose (the job was still busy) is not "missed".
    Without a reference there is nothing to compare: a never-seen job waits for its first fire.
    Times in the future were recorded under a wrong clock and tell nothing: a future
    ``last_alive`` is ignored, and a future ``reference`` gives None (what a start of unknown
    date means is the caller's decision).
    """
    if reference is None or clock.from_the_future(reference, now):
        return None
    if clock.from_the_future(last_alive, now):
        last_alive = None
    since = max(reference, last_alive) if last_alive is not None else reference
    if schedule.kind == "interval":
        period = timedelta(seconds=schedule.interval_seconds)
        # Interval jobs are anchored at their last start: fires at reference + k * period.
        steps = max(1, math.floor((since - reference) / period) + 1)
        fire: datetime | None = reference + period * steps
    else:
        # +1µs: a run that started exactly on a fire time has not missed that fire.
        fire = schedule.trigger(tz).get_next_fire_time(None, since + timedelta(microseconds=1))
    return fire if fire is not None and fire <= now else None


def interval_start(reference: datetime | None, period: timedelta, now: datetime) -> datetime:
    """First fire of an interval trigger: keep the cadence of the last run across restarts.

    Without this, "every 7d" on a host restarted twice a week would never fire, since an
    APScheduler interval counts from the moment the trigger is made. A start in the past is fine:
    the trigger continues its grid from there.
    """
    return reference + period if reference is not None else now + period


class _SkipNotice(logging.Filter):
    """APScheduler warns on every skipped or late fire, naming its internals; we log our own."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return (
            "maximum number of running instances" not in message and "was missed by" not in message
        )


_SKIP_NOTICE = _SkipNotice()


class JobScheduler:
    """Fires every scheduled, enabled job through the executor; one APScheduler job per job."""

    def __init__(
        self,
        executor: JobExecutor,
        history: History,
        *,
        clock_check_interval: float = clock.CHECK_INTERVAL,
        clock_offset: Callable[[], float] = clock.wall_minus_monotonic,
    ) -> None:
        self._executor = executor
        self._history = history
        self._clock_watch = clock.ClockWatch(
            self._clock_set_back, interval=clock_check_interval, read=clock_offset
        )
        self._lock = threading.RLock()
        self._scheduler: BackgroundScheduler | None = None
        self._config: AppConfig | None = None
        self._tz: tzinfo = UTC
        # What each APScheduler job was built from, to tell a changed schedule on reload.
        self._built: dict[str, tuple[str, str]] = {}
        self._closed = False

    # lifecycle

    def start(self, config: AppConfig, *, last_alive: datetime | None = None) -> list[str]:
        """Start firing; runs the catch-ups that are due and returns their job ids."""
        with self._lock:
            if self._scheduler is not None:
                return []
            for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
                aps_logger = logging.getLogger(name)
                if _SKIP_NOTICE not in aps_logger.filters:
                    aps_logger.addFilter(_SKIP_NOTICE)
            self._tz = resolve_timezone(config.timezone)
            self._scheduler = BackgroundScheduler(
                executors={"default": ThreadPoolExecutor(POOL_SIZE)}, timezone=self._tz
            )
            self._scheduler.add_listener(
                self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED
            )
            self._scheduler.start()
            self._config = config
            catch_ups = self._schedule_all(config, last_alive, datetime.now(UTC))
        self._clock_watch.start()
        self.refresh_all()
        return catch_ups

    def stop(self) -> None:
        """Stop firing; runs already started go on until the caller cancels them."""
        self._clock_watch.stop()
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            self._closed = True
            self._built.clear()
        if scheduler is not None:
            # shutdown() marks the scheduler stopped without waiting for its thread, which may
            # be about to drop a one-off catch-up it just fired; removing every job first waits
            # for that (both take APScheduler's job store lock), so its thread never looks for
            # a job that shutdown() already hid (JobLookupError, with a traceback).
            scheduler.remove_all_jobs()
            scheduler.shutdown(wait=False)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._scheduler is not None and self._scheduler.running

    # configuration

    def apply(self, config: AppConfig) -> None:
        """Adopt a reloaded config: add, rebuild, pause/resume and remove APScheduler jobs."""
        with self._lock:
            if self._scheduler is None:
                return
            self._config = config
            tz = resolve_timezone(config.timezone)
            retimed = str(tz) != str(self._tz)
            self._tz = tz
            now = datetime.now(UTC)
            for job_id in list(self._built):
                job = config.jobs.get(job_id)
                if job is None or job.schedule is None or retimed:
                    self._remove(job_id)
                    logger.info("job %s: schedule removed", job_id)
                elif self._built[job_id] != self._signature(job):
                    self._remove(job_id)
            for job_id, job in config.jobs.items():
                if job.schedule is None:
                    continue
                if job_id in self._built:
                    self._set_paused(job_id, not self._enabled(job_id))
                else:
                    reference, _future = self._last_start(job_id, now)
                    self._add(job_id, job, now, reference=reference)
        self.refresh_all()

    def set_enabled(self, job_id: str, enabled: bool) -> None:
        """The schedule switch: persisted in history, so it survives restarts."""
        self._history.set_setting(job_id, "enabled", enabled)
        with self._lock:
            if job_id in self._built:
                self._set_paused(job_id, not enabled)
        logger.info("job %s: schedule %s", job_id, "resumed" if enabled else "paused")
        self.refresh(job_id)

    # next_run_at in the states

    def refresh(self, job_id: str) -> None:
        """Write the job's next fire time and switch into its state, when they changed."""
        with self._lock:
            if self._config is None or job_id not in self._config.jobs:
                return
            aps_job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
            next_run = aps_job.next_run_time if aps_job is not None else None
            enabled = self._enabled(job_id)
        if job_id not in self._executor.states():
            return
        current = self._executor.state(job_id)
        if current.next_run_at == next_run and current.enabled == enabled:
            return
        self._executor.update(job_id, lambda s: st.scheduled(s, next_run, enabled))

    def refresh_all(self) -> None:
        with self._lock:
            job_ids = list(self._config.jobs) if self._config is not None else []
        for job_id in job_ids:
            self.refresh(job_id)

    # internals

    def _enabled(self, job_id: str) -> bool:
        assert self._config is not None  # noqa: S101 - only called once configured
        default = self._config.jobs[job_id].enabled
        return bool(self._history.setting(job_id, "enabled", default))

    def _signature(self, job: JobConfig) -> tuple[str, str]:
        return (job.schedule.text if job.schedule else "", str(job.catch_up))

    def _first_scheduled(self, job_id: str) -> datetime | None:
        first = self._history.setting(job_id, FIRST_SCHEDULED)
        return datetime.fromisoformat(first) if isinstance(first, str) else None

    def _last_start(self, job_id: str, now: datetime) -> tuple[datetime | None, datetime | None]:
        """When the job last started (else when it was first scheduled), and a start to ignore.

        A start recorded in the future was written under a wrong clock: scheduling from it
        would hold the job back until that date. It is returned second (and logged), and the
        latest start that is not in the future counts instead.
        """
        started = self._history.last_started(job_id)
        future = started if clock.from_the_future(started, now) else None
        if future is not None:
            logger.warning(
                "job %s: ignoring its last start %s, which lies in the future: the clock was "
                "wrong then or is wrong now",
                job_id,
                st.iso(future),
            )
            started = self._history.last_started(job_id, before=now + clock.SLACK)
        if started is not None:
            return started, future
        first = self._first_scheduled(job_id)
        return (None if clock.from_the_future(first, now) else first), future

    def _needs_catch_up(
        self,
        job_id: str,
        job: JobConfig,
        *,
        reference: datetime | None,
        future: datetime | None,
        last_alive: datetime | None,
        now: datetime,
    ) -> bool:
        if job.schedule is None or not job.catch_up or not self._enabled(job_id):
            return False
        if reference is None and future is not None:
            # It has run, but nobody knows when: a run now gives it a start (and a last
            # success) that can be trusted.
            logger.info("job %s: when it last ran is unknown; catching up", job_id)
            return True
        missed = missed_fire(
            job.schedule, self._tz, reference=reference, last_alive=last_alive, now=now
        )
        if missed is None:
            return False
        logger.info(
            "job %s: missed its run at %s while stopped; catching up", job_id, st.iso(missed)
        )
        return True

    def _schedule_all(
        self, config: AppConfig, last_alive: datetime | None, now: datetime
    ) -> list[str]:
        """Add every scheduled job and the catch-up runs that are due; their job ids."""
        assert self._scheduler is not None  # noqa: S101 - only called while started
        catch_ups = []
        for job_id, job in config.jobs.items():
            if job.schedule is None:
                continue
            reference, future = self._last_start(job_id, now)
            if self._needs_catch_up(
                job_id, job, reference=reference, future=future, last_alive=last_alive, now=now
            ):
                catch_ups.append(job_id)
                reference = now
            self._add(job_id, job, now, reference=reference)
        for job_id in catch_ups:
            # A one-off job in the same pool: it shares the shutdown and thread naming.
            self._scheduler.add_job(
                self._fire,
                DateTrigger(now, timezone=UTC),
                args=[job_id, "catch_up"],
                id=f"{job_id}.catch_up",
                misfire_grace_time=None,
                replace_existing=True,
            )
        return catch_ups

    def _clock_set_back(self, seconds: float) -> None:
        """Fire times computed before were read off the wrong clock: compute them again."""
        logger.warning(
            "the system clock was set back by %s; scheduling every job from the new time",
            format_duration(timedelta(seconds=round(seconds))),
        )
        with self._lock:
            if self._scheduler is None or self._config is None:
                return
            for job_id in list(self._built):
                self._remove(job_id)
            # The service was alive all along: only a job whose every start now lies in the
            # future catches up.
            now = datetime.now(UTC)
            self._schedule_all(self._config, now, now)
        self.refresh_all()

    def _trigger(
        self, schedule: Schedule, reference: datetime | None, now: datetime
    ) -> BaseTrigger:
        if schedule.kind != "interval":
            return schedule.trigger(self._tz)
        period = timedelta(seconds=schedule.interval_seconds)
        return IntervalTrigger(
            seconds=schedule.interval_seconds,
            start_date=interval_start(reference, period, now),
            timezone=UTC,
        )

    def _add(
        self, job_id: str, job: JobConfig, now: datetime, *, reference: datetime | None
    ) -> None:
        if job.schedule is None or self._scheduler is None:
            return
        first = self._first_scheduled(job_id)
        if first is None or clock.from_the_future(first, now):
            self._history.set_setting(job_id, FIRST_SCHEDULED, now.isoformat())
        options: dict[str, object] = {}
        if not self._enabled(job_id):
            options["next_run_time"] = None  # added paused
        self._scheduler.add_job(
            self._fire,
            self._trigger(job.schedule, reference, now),
            args=[job_id, "schedule"],
            id=job_id,
            name=job_id,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None if job.catch_up else MISFIRE_GRACE,
            replace_existing=True,
            **options,
        )
        self._built[job_id] = self._signature(job)
        logger.info("job %s: scheduled %s", job_id, job.schedule)

    def _remove(self, job_id: str) -> None:
        self._built.pop(job_id, None)
        if self._scheduler is not None and self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def _set_paused(self, job_id: str, paused: bool) -> None:
        if self._scheduler is None:
            return
        aps_job = self._scheduler.get_job(job_id)
        if aps_job is None:
            return
        if paused and aps_job.next_run_time is not None:
            self._scheduler.pause_job(job_id)
        elif not paused and aps_job.next_run_time is None:
            self._scheduler.resume_job(job_id)

    def _on_event(self, event: JobEvent) -> None:
        job_id = event.job_id.removesuffix(".catch_up")
        if event.code == EVENT_JOB_MAX_INSTANCES:
            logger.info("job %s: still running; the run due now is skipped", job_id)
        elif event.code == EVENT_JOB_MISSED:
            logger.warning("job %s: a run was due too long ago to start now; skipped", job_id)
        self.refresh(job_id)

    def _fire(self, job_id: str, trigger: Trigger) -> None:
        if self._closed:
            return  # submitted just before stop(): the service is going down
        try:
            self._executor.run(job_id, trigger)
        except JobBusy:
            logger.info("job %s: already running; this %s run is skipped", job_id, trigger)
        except KeyError:
            logger.info("job %s: no longer configured; not run", job_id)
        except Exception:  # a failed fire must not take the scheduler thread down
            logger.exception("job %s: the %s run failed to start", job_id, trigger)
        finally:
            # The run's own states may have raced the update after the fire.
            self.refresh(job_id)
