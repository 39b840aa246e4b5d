"""The management layer: catalog, secrets, backup configurations, jobs and recovery."""
