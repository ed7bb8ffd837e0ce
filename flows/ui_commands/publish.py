"""Publishing a UI command's answer as a Prefect artifact (table, or Markdown for text)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from justin_flows.ui.result import CommandResult, markdown_code_block


def publish_table(result: CommandResult, key: str, title: str) -> None:
    """``result.rows`` as a table artifact; a Markdown note when there are none."""
    description = f"{title}\n\n{result.summary()}"
    if result.rows:
        create_table_artifact(key=key, table=result.rows, description=description)
    else:
        create_markdown_artifact(key=key, markdown=f"{title}: nothing found.\n", description=description)
    get_run_logger().info(result.summary())


def publish_text(result: CommandResult, key: str, title: str) -> None:
    """``result.text`` as a Markdown artifact with a code block."""
    create_markdown_artifact(
        key=key, markdown=f"{title}\n\n{markdown_code_block(result.text)}", description=result.summary()
    )
    get_run_logger().info(result.summary())


def answer(result: CommandResult) -> dict[str, Any]:
    """The flow's return value: the printed text and the counts."""
    return {"command": result.command, "text": result.text, "counts": dict(result.counts)}
