"""The read-only justIN dashboard with CILogon login (reference §7). Start: ``serve(host, port)``."""

from __future__ import annotations

from justin_flows.dashboard.app import create_app, serve
from justin_flows.dashboard.config import DashboardConfig, DashboardConfigError

__all__ = ["DashboardConfig", "DashboardConfigError", "create_app", "serve"]
