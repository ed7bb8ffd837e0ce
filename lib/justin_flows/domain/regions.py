"""Countries and regions of justIN sites and storages (upstream ``justin.rseCountriesRegions``).

A site's country is derived from its name (``site_country``); a storage's country is the
Rucio RSE ``country`` attribute. Both map to a region through ``COUNTRY_REGIONS``, and the
distance ladder (``justin_flows.domain.distances``) compares countries and regions.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Country code -> region, as upstream's ``rseCountriesRegions`` (modules/__init__.py).
#: ``CERN`` is a pseudo-country of its own. Unknown countries have no region (``''``).
COUNTRY_REGIONS: Mapping[str, str] = MappingProxyType(
    {
        "BR": "South_America",
        "CA": "North_America",
        "US": "North_America",
        "IN": "South_Asia",
        "CERN": "Europe",
        "CH": "Europe",
        "CZ": "Europe",
        "DE": "Europe",
        "ES": "Europe",
        "FR": "Europe",
        "IT": "Europe",
        "NL": "Europe",
        "RU": "Europe",
        "UK": "Europe",
    }
)


def site_country(site_name: str) -> str:
    """The country of a justIN site: ``'CERN'`` for the site ``CERN``, else its first two characters.

    Upstream: the country computation in ``updateSites()`` (agents/justin-info-collector).
    """
    return "CERN" if site_name == "CERN" else site_name[:2]


def country_region(country: str | None) -> str:
    """The region of a country code, or ``''`` when the country is unknown or empty."""
    return COUNTRY_REGIONS.get(country or "", "")
