"""The HTCondor submit description of one justIN cluster (upstream ``submitJobs``, §4.4 step 4).

Built with the real ``htcondor2.Submit`` bindings, field by field in upstream's meaning, so
that ``str()`` of the result is what ``condor_submit`` reads on stdin. Better than upstream
on purpose: every ClassAd string is quoted by ``classad2.quote`` (upstream pasted values
between double quotes), names that end up in ClassAd lists are refused unless they are
``[A-Za-z0-9_.-]``, and a stage ClassAd can neither name an attribute that our own submit
commands set (``Requirements``, ``AccountingGroup``...) nor carry a ``$`` (condor_submit
expands ``$ENV(...)``/``$(...)`` macros, which would copy the factory's environment, e.g. a
database URL, into a job ad any user can read).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import classad2
import htcondor2

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""Site, entry, schedd and accounting names: no quote, comma, space or ``$`` can get in."""

CLASSAD_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A stage ClassAd name: a plain ClassAd attribute name (no scope dot, no expression)."""

# Job-ad attributes produced by the submit commands below, or that decide who pays and what
# runs. A ``+<name>`` line is inserted into the job ad after the commands are processed, so a
# stage ClassAd with one of these names could replace our value (e.g. a user's own
# accounting group). Compared case-insensitively, as ClassAd names are.
RESERVED_ATTRIBUTES = frozenset(
    name.lower()
    for name in (
        "AccountingGroup", "AcctGroup", "AcctGroupUser", "Args", "Arguments", "Cmd", "ClusterId",
        "ConcurrencyLimits", "Env", "Environment", "Err", "GetEnv", "Iwd", "JobLeaseDuration",
        "JobMaxRetries", "JobNotification", "JobPrio", "JobStatus", "JobUniverse", "MaxRetries",
        "MyType", "NiceUser", "OnExitHold", "OnExitRemove", "Out", "Owner", "PeriodicHold",
        "PeriodicRelease", "PeriodicRemove", "ProcId", "QDate", "Rank", "RequestCpus",
        "RequestDisk", "RequestGPUs", "RequestMemory", "RequireGPUs", "Requirements",
        "RetryUntil", "ShouldTransferFiles", "SuccessCheckExpr", "TargetType",
        "TransferExecutable", "TransferInput", "TransferOutput", "User", "UserLog",
        "WhenToTransferOutput", "x509userproxy", "x509UserProxySubject",
    )
)

DEFAULT_CONDOR_GROUP = "group_dune"

# Upstream's CVMFS/apptainer capabilities a non-NERSC slot must advertise (§4.4 step 4).
_CVMFS_CAPABILITIES = (
    "HAS_Singularity",
    "HAS_CVMFS_dune_opensciencegrid_org",
    "HAS_CVMFS_larsoft_opensciencegrid_org",
    "HAS_CVMFS_fifeuser1_opensciencegrid_org",
    "HAS_CVMFS_fifeuser2_opensciencegrid_org",
    "HAS_CVMFS_fifeuser3_opensciencegrid_org",
    "HAS_CVMFS_fifeuser4_opensciencegrid_org",
    "HAS_CVMFS_dune_osgstorage_org",
)
_SITE_TEST = "(isUndefined(target.GLIDEIN_Site) == FALSE) && (stringListIMember(target.GLIDEIN_Site, my.Desired_Sites))"
_PATH = re.compile(r"^/[A-Za-z0-9_.,+=@%/-]+$")


class SubmitDescriptionError(ValueError):
    """A value that must not reach a submit description; the message names it."""


@dataclass(frozen=True)
class SubmitSpec:
    """Everything one cluster's description depends on (upstream ``submitJobs`` arguments)."""

    instance: str
    schedd: str
    executable: str
    workflow_id: int
    stage_id: int
    count: int
    desired_sites: Sequence[str]
    accounting_group: str
    accounting_group_user: str
    wrapper_job_image: str
    processors: int = 1
    rss_bytes: int = 2000 * 1048576
    wall_seconds: int = 80000
    awt: bool = False
    desired_entries: Sequence[str] = ()
    gpus: int = 0
    gpus_min_bytes: int = 0
    gpus_min_runtime: float = 0.0
    gpus_min_capability: float = 0.0
    gpus_max_capability: float = 0.0
    classads: Sequence[tuple[str, str]] = field(default_factory=tuple)


@dataclass(frozen=True)
class SubmitDescription:
    """The bindings' object and the text for ``condor_submit``'s stdin (``str(submit)``)."""

    submit: htcondor2.Submit
    text: str


def quote_string(value: str) -> str:
    """``value`` as a ClassAd string literal: every quote and backslash escaped by classad2."""
    return str(classad2.quote(value))


def check_name(kind: str, name: str) -> str:
    """``name`` if it is ``[A-Za-z0-9_.-]+``, else a clear error naming ``kind``."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise SubmitDescriptionError(f"{kind} {name!r} is not [A-Za-z0-9_.-]+")
    return name


def check_classad(name: str, value: str, instance: str = "") -> tuple[str, str]:
    """A stage ClassAd ``(name, value)`` that is safe to put on a ``+<name>`` line."""
    if not isinstance(name, str) or not CLASSAD_ATTRIBUTE.match(name):
        raise SubmitDescriptionError(f"stage classad name {name!r} is not a ClassAd attribute name")
    if name.lower() in RESERVED_ATTRIBUTES or name.lower().startswith("justin_"):
        raise SubmitDescriptionError(f"stage classad name {name!r} is reserved for justIN/HTCondor")
    if not isinstance(value, str) or "$" in value or any(ord(c) < 32 for c in value):
        raise SubmitDescriptionError(f"stage classad {name!r}: value may not hold '$' or control characters")
    return name, value


def requirements(desired_sites: Sequence[str]) -> str:
    """Upstream's Requirements: NERSC sites skip the CVMFS/apptainer capability tests.

    Sites enter only through ``my.Desired_Sites`` (a quoted string attribute), never into
    the expression text itself.
    """
    if any("NERSC" in site for site in desired_sites):
        return f"({_SITE_TEST})"
    capabilities = " && ".join(f"(target.{cap} == true)" for cap in _CVMFS_CAPABILITIES)
    return f"({capabilities} && {_SITE_TEST})"


def _positive_int(kind: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SubmitDescriptionError(f"{kind} must be an integer >= {minimum}, not {value!r}")
    return value


def _float(value: float) -> str:
    return f"{float(value):f}"


def build_submit(spec: SubmitSpec) -> SubmitDescription:
    """The submit description of ``spec``, in upstream's order (stage ClassAds first)."""
    if not re.match(r"^[a-z0-9]+$", spec.instance):
        raise SubmitDescriptionError(f"instance {spec.instance!r} is not [a-z0-9]+")
    schedd = check_name("schedd", spec.schedd)
    group = check_name("accounting group", spec.accounting_group)
    user = check_name("accounting group user", spec.accounting_group_user)
    sites = [check_name("site", s) for s in spec.desired_sites]
    if not sites:
        raise SubmitDescriptionError("no desired sites")
    entries = [check_name("entry", e) for e in spec.desired_entries]
    if not _PATH.match(spec.executable):
        raise SubmitDescriptionError(f"executable {spec.executable!r} is not a plain absolute path")
    if "$" in spec.wrapper_job_image or not spec.wrapper_job_image:
        raise SubmitDescriptionError(f"wrapper job image {spec.wrapper_job_image!r} is empty or holds '$'")
    count = _positive_int("queue count", spec.count)
    processors = _positive_int("processors", spec.processors)
    rss_kib = _positive_int("rss_bytes", spec.rss_bytes, 1024) // 1024
    wall = _positive_int("wall_seconds", spec.wall_seconds)
    gpus = _positive_int("gpus", spec.gpus, 0)
    _positive_int("workflow_id", spec.workflow_id)
    _positive_int("stage_id", spec.stage_id)
    instance_upper = spec.instance.upper()

    sub = htcondor2.Submit()
    # Stage ClassAds first: the same key set again below keeps justIN's value.
    for name, value in spec.classads:
        name, value = check_classad(name, value)
        sub[f"+{name}"] = quote_string(value)

    sub["+DesiredOS"] = quote_string("SL7")
    sub["requirements"] = requirements(sites)
    if spec.awt:
        sub[f"+JUSTIN_{instance_upper}_AWT"] = "True"
    else:
        sub[f"+JUSTIN_{instance_upper}_Stage"] = quote_string(f"{spec.instance}-w{spec.workflow_id}s{spec.stage_id}")
        sub["+Desired_Entries"] = quote_string(",".join(entries))

    if gpus > 0:
        sub["request_gpus"] = str(gpus)
        if spec.gpus_min_bytes:
            sub["gpus_minimum_memory"] = str(int(spec.gpus_min_bytes) // 1048576)
        if spec.gpus_min_runtime:
            sub["gpus_minimum_runtime"] = _float(spec.gpus_min_runtime)
        if spec.gpus_min_capability:
            sub["gpus_minimum_capability"] = _float(spec.gpus_min_capability)
        if spec.gpus_max_capability:
            sub["gpus_maximum_capability"] = _float(spec.gpus_max_capability)

    wrapper_out = f"/tmp/justin-wrapper-$(Cluster).$(Process).{schedd}"
    fixed: list[tuple[str, str]] = [
        ("+Desired_Sites", quote_string(",".join(sites))),
        ("+SingularityImage", quote_string(spec.wrapper_job_image)),
        ("+Jobsub_Group", quote_string("dune")),
        ("+Job_Expected_Max_Lifetime", str(wall)),
        ("+Orig_AuthTokenGroups", quote_string("/dune")),
        ("universe", "vanilla"),
        ("environment", f'"JUSTIN_JOBSUB_ID=$(Cluster).$(Process)@{schedd}"'),
        ("periodic_remove", "(JobStatus == 1) && ((time() - QDate) > 86400)"),
        ("periodic_hold", "False"),
        ("max_retries", "0"),
        ("retry_until", "True"),
        ("on_exit_remove", "True"),
        ("on_exit_hold", "False"),
        ("notification", "Never"),
        ("executable", spec.executable),
        ("arguments", ""),
        ("accounting_group", group),
        ("accounting_group_user", user),
        ("rank", "1"),
        ("job_lease_duration", "3600"),
        ("request_memory", f"{rss_kib}KB"),
        ("request_cpus", str(processors)),
        ("request_disk", "1000000"),
        ("getenv", "False"),
        ("output", f"{wrapper_out}.out"),
        ("error", f"{wrapper_out}.out"),
        ("log", f"{wrapper_out}.log"),
        ("transfer_output_files", '""'),
        ("should_transfer_files", "YES"),
        ("when_to_transfer_output", "ON_EXIT_OR_EVICT"),
    ]
    for key, value in fixed:
        sub[key] = value
    sub.setQArgs(str(count))
    return SubmitDescription(sub, str(sub))
