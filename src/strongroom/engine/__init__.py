"""The engine: backup, restore, check, diff, stats. It never prints; it emits events."""
