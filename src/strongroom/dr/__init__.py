"""Disaster recovery: plans of ordered restores, run for real or rehearsed
into a scratch area, measured (RTO, RPO) and reported."""
