"""Schedules of managed configurations: what a spec means (spec.py, cron.py),
which slot is due when (slots.py) and how the scheduler notices the clock
jumping (clock.py). Pure code over an injected clock: nothing here sleeps,
reads the environment or touches the catalog."""
