"""What a UI command returns, and the two ways it can fail."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class UIInputError(ValueError):
    """The request itself is wrong: a malformed argument, bad MQL, an unknown jobscript or
    workflow. Upstream answers these with HTTP 400; the CLI exits with 2."""


class UIServiceError(RuntimeError):
    """A service failed to answer (Rucio, MetaCat, GitHub, TLS verification). Asking again
    later may work; the CLI exits with 1."""


@dataclass
class CommandResult:
    """One command's answer: ``lines`` (each printed with a newline, as upstream) or, for a
    jobscript, ``text`` verbatim; ``rows`` is the same answer as a table for an artifact."""

    command: str
    lines: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    body: str | None = None

    @property
    def text(self) -> str:
        """Exactly what the command prints."""
        if self.body is not None:
            return self.body
        return "".join(line + "\n" for line in self.lines)

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.counts.items())]
        return f"{self.command}: " + (", ".join(parts) or "nothing found")


def markdown_code_block(text: str, info: str = "") -> str:
    """``text`` as a fenced Markdown code block whose fence no backtick run inside can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{info}\n{body}{fence}\n"
