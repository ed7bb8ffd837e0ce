"""The justIN UI-service commands (``services/justin-wsgi-ui``, reference §6) as plain functions.

``show-jobscript`` (``jobscripts``), ``show-files`` (``files``) and ``show-replicas``
(``replicas``) return a ``CommandResult``: the exact text upstream's command prints, plus a
table for a Prefect artifact. The CLI and the flows in ``flows/ui_commands/`` call them.
No Prefect imports here; adapters are passed in.
"""

from __future__ import annotations

from justin_flows.ui.result import CommandResult, UIInputError, UIServiceError

__all__ = ["CommandResult", "UIInputError", "UIServiceError"]
