"""The wrapper-job script one cluster runs (upstream ``submitJobs`` steps 1-2, reference §4.4).

Our own template (``templates/justin-wrapper-job``, shipped as package data) with upstream's
placeholders. Better than upstream on purpose: the rendered script goes into a private
``0700`` temporary directory as a ``0700`` file (upstream: a world-readable ``/tmp`` file
holding the cluster secret), every value is checked before it is pasted into shell source,
and the secret is registered for scrubbing so it never reaches a log, error or ledger row.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from justin_flows.secrets import register_secret

TEMPLATE_NAME = "justin-wrapper-job"
PLACEHOLDERS = (
    "job_secret",
    "instance",
    "workflow_id",
    "stage_id",
    "jobscript_image",
    "metacat_auth_server_url",
    "metacat_server_outputs_url",
)
# Values land between single quotes in shell source: nothing that could end the quote,
# expand, or start a new line gets in.
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_.:/@%+=,~-]+$")
_LEFTOVER = re.compile(r"###justin_[a-z_]+###")


class WrapperError(ValueError):
    """A value that cannot go into the wrapper script; the message never shows the secret."""


@dataclass(frozen=True)
class WrapperValues:
    """The placeholder values of one cluster's wrapper (``job_secret`` shared by its jobs)."""

    job_secret: str
    instance: str
    workflow_id: int
    stage_id: int
    jobscript_image: str
    metacat_auth_server_url: str
    metacat_server_outputs_url: str

    def __repr__(self) -> str:  # keep the secret out of reprs in tracebacks and logs
        return (
            f"WrapperValues(job_secret='***', instance={self.instance!r}, workflow_id={self.workflow_id}, "
            f"stage_id={self.stage_id}, jobscript_image={self.jobscript_image!r})"
        )


def load_template() -> str:
    return (resources.files("justin_flows") / "templates" / TEMPLATE_NAME).read_text(encoding="utf-8")


def render_wrapper_text(values: WrapperValues, template: str | None = None) -> str:
    """The template with every ``###justin_<name>###`` placeholder replaced."""
    register_secret(values.job_secret)
    text = load_template() if template is None else template
    for name in PLACEHOLDERS:
        value = str(getattr(values, name))
        if not _SHELL_SAFE.match(value):
            shown = "***" if name == "job_secret" else repr(value)
            raise WrapperError(f"wrapper value {name}={shown} has characters unsafe in a shell script")
        placeholder = f"###justin_{name}###"
        if placeholder not in text:
            raise WrapperError(f"wrapper template lacks the placeholder {placeholder}")
        text = text.replace(placeholder, value)
    leftover = _LEFTOVER.search(text)
    if leftover:
        raise WrapperError(f"wrapper template has an unknown placeholder {leftover.group(0)}")
    return text


def render_wrapper(values: WrapperValues, *, directory: Path | None = None) -> Path:
    """Write the rendered wrapper as ``0700`` into a new private (``0700``) temporary directory.

    Returns the script's path; ``remove_wrapper(path)`` deletes it with its directory.
    """
    text = render_wrapper_text(values)
    private_dir = Path(tempfile.mkdtemp(prefix="justin-wrapper-", dir=directory))  # mode 0700
    path = private_dir / TEMPLATE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRWXU)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def remove_wrapper(path: Path) -> None:
    """Delete a wrapper written by ``render_wrapper`` and its private directory."""
    shutil.rmtree(Path(path).parent, ignore_errors=True)
