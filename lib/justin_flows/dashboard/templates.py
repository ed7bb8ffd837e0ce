"""The dashboard's HTML: Jinja2 templates kept in code, autoescaped, no JavaScript at all."""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - justIN dashboard</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { background: #1d3c5a; color: #fff; padding: .5em 1em; display: flex; gap: 1.5em; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
header .user { margin-left: auto; }
header form { display: inline; }
main { padding: 1em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; vertical-align: top; }
th { background: #eef; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #a00; font-weight: bold; }
.good { color: #070; }
.muted { color: #777; }
</style>
</head>
<body>
<header>
<strong>justIN {{ instance }}</strong>
{% if user %}
<nav>
<a href="/">Overview</a> |
<a href="/rucio-health">Rucio health</a> |
<a href="/storages">Storages</a> |
<a href="/sites">Sites and entries</a> |
<a href="/jobs">Recent jobs</a> |
<a href="/external-calls">External calls</a>
</nav>
<span class="user">{{ user.display_name }}
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<button type="submit">Log out</button></form></span>
{% endif %}
</header>
<main>
<h1>{{ title }}</h1>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

_MACROS = """{% macro yesno(value) %}{% if value %}yes{% else %}<span class="muted">no</span>{% endif %}{% endmacro %}"""

_OVERVIEW = """{% extends "base.html" %}{% block content %}
<table>
<tr><th>storages</th><td class="num">{{ counts.storages }}</td></tr>
<tr><th>sites (enabled)</th><td class="num">{{ counts.sites }} ({{ counts.enabled_sites }})</td></tr>
<tr><th>entries</th><td class="num">{{ counts.entries }}</td></tr>
<tr><th>jobs</th><td class="num">{{ counts.jobs }}</td></tr>
<tr><th>external calls, last 24 h</th><td class="num">{{ counts.calls_24h }}</td></tr>
</table>
<p>Logged in as {{ user.display_name }}{% if user.eppn %} ({{ user.eppn }}){% endif %}; groups: {{ user.groups | join(", ") }}.</p>
{% endblock %}"""

_RUCIO = """{% extends "base.html" %}{% block content %}
{% if page.current %}
<p>Latest stored measurement ({{ page.current_updated }} UTC):
{% if page.current.overloaded %}<span class="bad">{{ page.current.reason }}</span>{% else %}<span class="good">{{ page.current.reason }}</span>{% endif %}</p>
{% else %}<p class="muted">No measurement stored yet (the rucio-health deployment writes one every 300 s).</p>{% endif %}
<h2>Measurements in the last {{ hours }} h (from the external-call ledger)</h2>
{% if page.history %}
<table>
<tr><th>started (UTC)</th><th>pings</th><th>failed</th><th>average ms</th><th>slowest ms</th><th>error</th><th>flow run</th></tr>
{% for r in page.history %}
<tr><td>{{ r.started }}</td><td class="num">{{ r.pings }}</td><td class="num{% if r.errors %} bad{% endif %}">{{ r.errors }}</td>
<td class="num">{{ r.avg_ms }}</td><td class="num">{{ r.max_ms }}</td><td>{{ r.error }}</td><td class="muted">{{ r.flow_run_id }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">No Rucio pings recorded in this period.</p>{% endif %}
{% endblock %}"""

_STORAGES = """{% extends "base.html" %}{% from "macros.html" import yesno %}{% block content %}
<table>
<tr><th>RSE</th><th>occupancy %</th><th>site</th><th>region</th><th>country</th><th>Rucio read</th><th>Rucio write</th>
<th>justIN read</th><th>justIN write</th><th>needs pin</th><th>write schemes (LAN / WAN)</th><th>decommissioned</th><th>last seen in Rucio (UTC)</th></tr>
{% for s in rows %}
<tr><td>{{ s.rse_name }}</td><td class="num">{{ s.occupancy_percent }}</td><td>{{ s.site_name }}</td><td>{{ s.region }}</td><td>{{ s.country }}</td>
<td>{{ yesno(s.rucio_read) }}</td><td>{{ yesno(s.rucio_write) }}</td><td>{{ yesno(s.justin_read) }}</td><td>{{ yesno(s.justin_write) }}</td>
<td>{{ yesno(s.needs_pin) }}</td><td>{{ s.lan_write_scheme }} / {{ s.wan_write_scheme }}</td><td>{{ yesno(s.decommissioned) }}</td><td>{{ s.last_rucio_seen_time }}</td></tr>
{% else %}<tr><td colspan="13" class="muted">no storages yet</td></tr>{% endfor %}
</table>
{% endblock %}"""

_SITES = """{% extends "base.html" %}{% from "macros.html" import yesno %}{% block content %}
<h2>Sites</h2>
<table>
<tr><th>site</th><th>enabled</th><th>region</th><th>country</th><th>jobsub name</th><th>WLCG name</th><th>only on request</th>
<th>only production</th><th>entries</th><th>last seen in OSG (UTC)</th><th>last submitted (UTC)</th></tr>
{% for s in sites %}
<tr><td>{{ s.site_name }}</td><td>{{ yesno(s.enabled) }}</td><td>{{ s.region }}</td><td>{{ s.country }}</td><td>{{ s.jobsub_site_name }}</td>
<td>{{ s.wlcg_site_name }}</td><td>{{ yesno(s.only_on_request) }}</td><td>{{ yesno(s.only_production) }}</td><td class="num">{{ s.entries }}</td>
<td>{{ s.last_osg_seen_time }}</td><td>{{ s.last_submitted_time }}</td></tr>
{% else %}<tr><td colspan="11" class="muted">no sites yet</td></tr>{% endfor %}
</table>
<h2>Entries</h2>
<table>
<tr><th>entry</th><th>site</th><th>gatekeeper</th><th>max processors</th><th>max RSS MiB</th><th>max wall s</th><th>GPUs</th><th>last seen in OSG (UTC)</th></tr>
{% for e in entries %}
<tr><td>{{ e.entry_name }}</td><td>{{ e.site_name }}</td><td>{{ e.gatekeeper }}</td><td class="num">{{ e.max_processors }}</td>
<td class="num">{{ e.max_rss_mib }}</td><td class="num">{{ e.max_wall_seconds }}</td><td>{{ yesno(e.gpus) }}</td><td>{{ e.last_osg_seen_time }}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no entries yet</td></tr>{% endfor %}
</table>
{% endblock %}"""

_JOBS = """{% extends "base.html" %}{% block content %}
<p>The {{ limit }} most recently submitted jobs.</p>
<table>
<tr><th>justIN job</th><th>jobsub id</th><th>workflow.stage</th><th>state</th><th>site</th><th>entry</th><th>processors</th><th>RSS MiB</th>
<th>submitted (UTC)</th><th>finished (UTC)</th><th>jobscript exit</th><th>abort code</th></tr>
{% for j in rows %}
<tr><td class="num">{{ j.justin_job_id }}</td><td>{{ j.jobsub_id }}</td><td>{{ j.workflow_stage }}</td><td>{{ j.state }}</td><td>{{ j.site_name }}</td>
<td>{{ j.entry_name }}</td><td class="num">{{ j.processors }}</td><td class="num">{{ j.rss_mib }}</td><td>{{ j.submitted_time }}</td>
<td>{{ j.finished_time }}</td><td class="num">{{ j.jobscript_exit }}</td><td class="num">{{ j.abort_code }}</td></tr>
{% else %}<tr><td colspan="12" class="muted">no jobs yet</td></tr>{% endfor %}
</table>
{% endblock %}"""

_CALLS = """{% extends "base.html" %}{% block content %}
<p>Call attempts per hour (UTC) and service, last {{ hours }} h, from the external-call ledger; failed attempts in brackets.
Other periods: <a href="/external-calls?hours=24">24 h</a>, <a href="/external-calls?hours=72">72 h</a>, <a href="/external-calls?hours=168">7 days</a>.</p>
{% if data.rows %}
<table>
<tr><th>hour (UTC)</th>{% for s in data.services %}<th>{{ s }}</th>{% endfor %}<th>all</th></tr>
{% for r in data.rows %}
<tr><td>{{ r.hour }}</td>{% for s in data.services %}<td class="num">{% if s in r %}{{ r[s].calls }}{% if r[s].errors %} <span class="bad">({{ r[s].errors }})</span>{% endif %}{% endif %}</td>{% endfor %}
<td class="num">{{ r.total }}</td></tr>
{% endfor %}
<tr><th>total</th>{% for s in data.services %}<th class="num">{{ data.totals[s].calls }}{% if data.totals[s].errors %} ({{ data.totals[s].errors }}){% endif %}</th>{% endfor %}<th></th></tr>
</table>
{% else %}<p class="muted">No external calls recorded in this period.</p>{% endif %}
{% endblock %}"""

_MESSAGE = """{% extends "base.html" %}{% block content %}
<p{% if bad %} class="bad"{% endif %}>{{ message }}</p>
{% if link %}<p><a href="{{ link }}">{{ link_text }}</a></p>{% endif %}
{% endblock %}"""

TEMPLATES = {
    "base.html": _BASE,
    "macros.html": _MACROS,
    "overview.html": _OVERVIEW,
    "rucio_health.html": _RUCIO,
    "storages.html": _STORAGES,
    "sites.html": _SITES,
    "jobs.html": _JOBS,
    "external_calls.html": _CALLS,
    "message.html": _MESSAGE,
}

_ENV = Environment(loader=DictLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)


def render(name: str, **context: Any) -> str:
    return _ENV.get_template(name).render(**context)
