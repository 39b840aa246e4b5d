"""The daemon: `strongroom serve`, the scheduler and workers it runs, and what it runs on."""
