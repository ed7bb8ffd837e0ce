"""Parsing ``condor_userprio -quotas -allusers`` output (updateGroupsHTCondor, reference §2.3)."""

from __future__ import annotations

import pytest

from justin_flows.domain.condor_userprio import GroupQuota, parse_line, parse_quotas

# the layout condor_userprio prints for a pool with group quotas (headings, dashes, footer)
REAL_LAYOUT = """\
Last Priority Update: 12/3  13:09
Group                Effective  Config     Use    Subtree   Weighted
Name                   Quota     Quota   Surplus   Quota   Requested
-------------------- --------- --------- ------- --------- ----------
group_dune            10000.00  10000.00 ByQuota  10000.00       2500
group_dune.prod        7000.00   7000.00 ByQuota   7000.00       1800
group_dune.users       3000.00   3000.00 ByQuota   3000.00        700
group_mu2e              500.00    500.00 ByQuota    500.00         10
<none>                    0.00      0.00 yes           n/d          0
-------------------- --------- --------- ------- --------- ----------
Number of users: 0                       ByQuota
"""


def test_real_layout_gives_only_the_dune_groups_in_order() -> None:
    parsed = parse_quotas(REAL_LAYOUT)
    assert parsed.groups == (
        GroupQuota("group_dune", 10000.0, 10000.0),
        GroupQuota("group_dune.prod", 7000.0, 7000.0),
        GroupQuota("group_dune.users", 3000.0, 3000.0),
    )
    assert parsed.problems == ()  # headings, <none>, other VOs' groups are not problems


def test_effective_and_config_quota_are_the_second_and_third_fields() -> None:
    assert parse_line("group_dune.x 12.5 40 Regroup 40 3") == GroupQuota("group_dune.x", 12.5, 40.0)
    assert parse_line("  group_dune.y\t1e3 0.0 no 0 0  ") == GroupQuota("group_dune.y", 1000.0, 0.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("group_dune.bad 1;DELETE/**/FROM/**/condor_groups 5 ByQuota 5 0",
         "effective quota '1;DELETE/**/FROM/**/condor_groups' is not a number"),
        ("group_dune.bad 1 2 3 4 5 6", "expected 6 whitespace-separated fields, found 7"),
        ("group_dune.bad abc 5 ByQuota 5 0", "effective quota 'abc' is not a number"),
        ("group_dune.bad 5 1,5 ByQuota 5 0", "config quota '1,5' is not a number"),
        ("group_dune.bad nan 5 ByQuota 5 0", "effective quota 'nan' is not a finite number"),
        ("group_dune.bad 5 inf ByQuota 5 0", "config quota 'inf' is not a finite number"),
        ("group_dune.bad 5 5 ByQuota 5", "expected 6 whitespace-separated fields, found 5"),
        ("group_dune\"x 5 5 ByQuota 5 0", "group name 'group_dune\"x' has characters other than letters"),
        ("group_dune'x 5 5 ByQuota 5 0", "group name \"group_dune'x\" has characters other than letters"),
    ],
)
def test_unusable_dune_line_raises_with_the_reason(line: str, reason: str) -> None:
    """Upstream pasted the quota text unquoted into SQL; here it must be a finite number."""
    with pytest.raises(ValueError) as err:
        parse_line(line)
    assert str(err.value).startswith(reason)


@pytest.mark.parametrize("line", ["", "Group Effective Config Use Subtree Weighted", "<none> 0 0 yes n/d 0",
                                  "group_mu2e x y z", "Number of users: 0 ByQuota"])
def test_lines_about_nothing_dune_are_passed_over(line: str) -> None:
    assert parse_line(line) is None


def test_a_garbage_line_is_a_problem_naming_the_line_and_the_good_lines_are_kept() -> None:
    text = REAL_LAYOUT.replace("group_dune.prod        7000.00", "group_dune.prod        7000,00")
    parsed = parse_quotas(text)
    assert [g.name for g in parsed.groups] == ["group_dune", "group_dune.users"]
    assert len(parsed.problems) == 1
    problem = parsed.problems[0]
    assert problem.line_number == 6
    assert problem.describe() == (
        "condor_userprio line 6 'group_dune.prod        7000,00   7000.00 ByQuota   7000.00       1800': "
        "effective quota '7000,00' is not a number"
    )


def test_a_group_listed_twice_uses_the_later_line_and_says_so() -> None:
    parsed = parse_quotas("group_dune.a 1 1 x 1 1\ngroup_dune.b 2 2 x 2 2\ngroup_dune.a 3 4 x 4 4\n")
    assert parsed.groups == (GroupQuota("group_dune.b", 2.0, 2.0), GroupQuota("group_dune.a", 3.0, 4.0))
    assert [(p.line_number, p.reason) for p in parsed.problems] == [
        (3, "group_dune.a listed again; this later line is used")
    ]


def test_empty_output_has_no_groups_and_no_problems() -> None:
    assert parse_quotas("") == parse_quotas("\n\n")
    assert parse_quotas("").groups == () and parse_quotas("").problems == ()
