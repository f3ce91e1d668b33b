"""libpq host lists: one URL per member, with the list's credentials and options, and errors
that never echo the URL."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.dsn import HostListError, parse_host_list


def test_a_netloc_host_list_gives_one_url_per_member() -> None:
    hosts = parse_host_list(
        "postgresql://app:pw@h1:5433,h2,[::1]:6000/db?sslmode=require&target_session_attrs=read-write"
    )
    assert [member.name for member in hosts.members] == ["h1:5433", "h2:5432", "[::1]:6000"]
    assert [member.url for member in hosts.members] == [
        "postgresql://app:pw@h1:5433/db?sslmode=require",
        "postgresql://app:pw@h2:5432/db?sslmode=require",
        "postgresql://app:pw@[::1]:6000/db?sslmode=require",
    ]
    assert hosts.target_session_attrs == "read-write"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@/db?host=h1,h2&port=7,8",
        "postgresql://app@/db?host=h1&host=h2&port=7,8",
        "postgresql://app@/db?host=h1:7&host=h2:8",
    ],
)
def test_the_query_forms_name_the_same_members(url: str) -> None:
    hosts = parse_host_list(url)
    assert [member.name for member in hosts.members] == ["h1:7", "h2:8"]
    assert hosts.members[1].url == "postgresql://app@h2:8/db"
    assert hosts.target_session_attrs == "any"


def test_one_port_applies_to_every_host() -> None:
    hosts = parse_host_list("postgresql://app@/db?host=a,b&port=6543")
    assert [member.port for member in hosts.members] == [6543, 6543]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:S3cret-Pw@h1:x,h2/db", "port"),
        ("postgresql://app:S3cret-Pw@h1,,h2/db", "empty host"),
        ("postgresql://app:S3cret-Pw@h1,h1/db", "twice"),
        ("postgresql://app:S3cret-Pw@/db?host=a,b&port=1,2,3", "one port per host"),
        ("postgresql://app:S3cret-Pw@a,b/db?target_session_attrs=bogus", "target_session_attrs"),
        ("postgresql://app:S3cret-Pw@/db", "no host"),
    ],
)
def test_bad_host_lists_say_why_without_the_url(url: str, problem: str) -> None:
    with pytest.raises(HostListError) as caught:
        parse_host_list(url)
    assert problem in str(caught.value)
    assert "S3cret-Pw" not in str(caught.value)


def test_the_settings_take_a_host_list_as_the_cluster() -> None:
    url = "postgresql://postgres@127.0.0.1:5433,127.0.0.1:5432/postgres?target_session_attrs=read-write"
    database = Settings.from_env({"DATABASE_URL": url}).database
    assert [member.name for member in database.members] == ["127.0.0.1:5433", "127.0.0.1:5432"]
    assert database.target_session_attrs == "read-write"
    assert database.url == url


def test_a_single_host_is_a_fixed_topology() -> None:
    database = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db"}).database
    assert database.members == ()


@pytest.mark.parametrize("attrs", ["read-only", "standby"])
def test_standby_only_targets_are_refused_with_the_reason(attrs: str) -> None:
    with pytest.raises(ConfigError, match="needs the primary") as caught:
        Settings.from_env({"DATABASE_URL": f"postgresql://u@a,b/db?target_session_attrs={attrs}"})
    assert caught.value.variable == "DATABASE_URL"


def test_a_host_list_and_replica_urls_do_not_mix() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"DATABASE_URL": "postgresql://u@a,b/db", "DATABASE_REPLICA_URLS": "postgresql://c/db"}
        )
    assert caught.value.variable == "DATABASE_REPLICA_URLS"


def test_an_ipv6_member_may_stand_anywhere_in_the_list() -> None:
    # Debian's Python 3.11 `urlsplit` refuses this URL (a bracket not first in the netloc);
    # libpq, and so the service, accept it.
    url = "postgresql://app:pw@127.0.0.1:8409,[::1]:8409/messenger"
    hosts = parse_host_list(url)
    assert [member.name for member in hosts.members] == ["127.0.0.1:8409", "[::1]:8409"]
    assert hosts.members[1].url == "postgresql://app:pw@[::1]:8409/messenger"
    database = Settings.from_env({"DATABASE_URL": url}).database
    assert [member.host for member in database.members] == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("postgresql://u@h1,[fe80::1],h3:7/db", ["h1:5432", "[fe80::1]:5432", "h3:7"]),
        ("postgresql://u@[::1]:1,[::2]:2,[::3]/db", ["[::1]:1", "[::2]:2", "[::3]:5432"]),
        ("postgresql://u@h1,[::1]/db?port=6000", ["h1:6000", "[::1]:6000"]),
        ("postgresql://u@/db?host=h1,::1&port=1,2", ["h1:1", "[::1]:2"]),
        ("postgresql://u@/db?host=h1%2C%3A%3A1&port=1,2", ["h1:1", "[::1]:2"]),
        ("postgres://u@h%2Dx:5/db", ["h-x:5"]),
        ("postgresql://[::1]", ["[::1]:5432"]),
    ],
)
def test_libpq_host_lists(url: str, names: list[str]) -> None:
    assert [member.name for member in parse_host_list(url).members] == names


def test_user_and_password_are_percent_decoded_and_kept_encoded_in_member_urls() -> None:
    hosts = parse_host_list(
        "postgresql://us%40er:p%40ss%2Fw%3Ard@h1,[::1]/db?application_name=a%20b"
    )
    assert (hosts.user, hosts.password) == ("us@er", "p@ss/w:rd")
    assert hosts.members[1].url == (
        "postgresql://us%40er:p%40ss%2Fw%3Ard@[::1]:5432/db?application_name=a%20b"
    )
    assert "p@ss" not in repr(hosts)
    assert parse_host_list("postgresql://h/db").user is None


def test_a_password_may_hold_a_question_mark_or_hash_when_encoded() -> None:
    hosts = parse_host_list("postgresql://u:a%3Fb%23c@h/db")
    assert hosts.password == "a?b#c"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:S3cret-Pw@h1,[::1/db", "malformed IPv6"),
        ("postgresql://app:S3cret-Pw@h1,[::1]x/db", "malformed IPv6"),
        ("postgresql://app:S3cret-Pw@h1,::1/db", "IPv6 host without brackets"),
        ("postgresql://app:S3cret-Pw@h1,[]:5/db", "malformed IPv6"),
        ("postgresql://app:S3cret-Pw@h1,[::1]:0/db", "port"),
        ("postgresql://app:S3cret-Pw@h1:65536/db", "port"),
        ("postgresql://app:S3cret-Pw@h%zz/db", "percent-escape"),
        ("postgresql://app:S3cret-Pw@h/db?sslmode", "key=value"),
        ("postgresql//app:S3cret-Pw@h/db", "not a valid URL"),
        ("postgresql://app:S3cret-Pw@h /db", "not a valid URL"),
    ],
)
def test_malformed_libpq_urls_say_why_without_the_url(url: str, problem: str) -> None:
    with pytest.raises(HostListError) as caught:
        parse_host_list(url)
    assert problem in str(caught.value)
    assert "S3cret-Pw" not in str(caught.value)
