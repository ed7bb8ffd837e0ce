"""Finder functions (upstream agents/justin-finder, reference §3), one module per job."""
