"""Trees, snapshots and choosing snapshots."""
