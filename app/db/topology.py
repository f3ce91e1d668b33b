"""How the cluster is named, and what the data layer does with each round of roles: two
strategies (docs/architecture.md, "Naming the cluster").

- `FixedTopology`: `DATABASE_URL` is the primary and `DATABASE_REPLICA_URLS` the replicas;
  roles are recorded, never followed.
- `HostListTopology`: `DATABASE_URL` names every member and each round of the monitor finds
  their roles. The writer pool follows the one primary (a new pool on the new primary; the old
  one is closed, so no connection to a demoted or dead server is reused for a write),
  standbys join the readers, and while two members claim to be primary no write goes to
  either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.config import Settings
from app.dsn import parse_host_list


@dataclass(frozen=True, slots=True)
class Following:
    """What a round of roles asks of the data layer (nothing, for a fixed topology)."""

    block: list[str] = field(default_factory=list)
    """Two or more primaries: block writes, naming them."""
    writer: str | None = None
    """The member the writer pool must move to."""
    joiners: list[str] = field(default_factory=list)
    """Standbys that are not readers yet."""


NOTHING = Following()


@dataclass(frozen=True, slots=True)
class FixedTopology:
    """The configuration says which member is the primary and which are replicas."""

    urls: Mapping[str, str]
    """Every member's URL by name (`host:port`), the primary first."""
    name: str = "fixed"
    finds_roles: bool = False
    """Roles need not be probed before the first write."""

    @property
    def initial_replicas(self) -> list[str]:
        """The replicas, from the configuration."""
        return list(self.urls)[1:]

    def replica_pool_name(self, member: str) -> str:
        """`replica-<n>`, n counting the replicas as the configuration names them."""
        return f"replica-{list(self.urls).index(member) - 1}"

    def probe_label(self, member: str) -> str:
        """The monitor engine's label in `pg_stat_activity` (`<label>-monitor`)."""
        index = list(self.urls).index(member)
        return "primary" if index == 0 else f"member-{index}"

    def start_target(self, writer_member: str) -> str:
        """What an aborted start names as unreachable."""
        return writer_member

    def follow(
        self, primaries: list[str], writer_member: str, standbys_not_reading: list[str]
    ) -> Following:
        """Nothing: the configuration, not the cluster, says who the primary is."""
        return NOTHING


@dataclass(frozen=True, slots=True)
class HostListTopology:
    """A host list: the roles are found by probing every member, and followed."""

    urls: Mapping[str, str]
    """Every member's URL by name (`host:port`), in the order the list names them."""
    name: str = "host list"
    finds_roles: bool = True
    """The writer is known only once a probe found the primary."""

    @property
    def initial_replicas(self) -> list[str]:
        """None: standbys join as the monitor finds them."""
        return []

    def replica_pool_name(self, member: str) -> str:
        """`replica-<n>`, n the member's place in the host list."""
        return f"replica-{list(self.urls).index(member)}"

    def probe_label(self, member: str) -> str:
        """The monitor engine's label in `pg_stat_activity` (`<label>-monitor`)."""
        return f"member-{list(self.urls).index(member)}"

    def start_target(self, writer_member: str) -> str:
        """What an aborted start names as unreachable: every member."""
        return ", ".join(self.urls)

    def follow(
        self, primaries: list[str], writer_member: str, standbys_not_reading: list[str]
    ) -> Following:
        """Block writes while two members claim the primary; else move the writer to the one
        primary and let new standbys join the readers."""
        if len(primaries) > 1:
            return Following(block=primaries)
        moved = primaries[0] if len(primaries) == 1 and primaries[0] != writer_member else None
        joiners = [member for member in standbys_not_reading if member != moved]
        return Following(writer=moved, joiners=joiners)


Topology = FixedTopology | HostListTopology


def topology_of(settings: Settings) -> Topology:
    """The strategy the settings name: a host list when `DATABASE_URL` has several hosts."""
    url = settings.database.url
    if url is None:
        raise ValueError("DATABASE_URL is not set")
    if settings.database.members:
        return HostListTopology({member.name: member.url for member in settings.database.members})
    urls = {_member_name(url, 0): url}
    for index, replica_url in enumerate(settings.database.replica_urls, start=1):
        name = _member_name(replica_url, index)
        urls[name if name not in urls else f"{name}#{index}"] = replica_url
    return FixedTopology(urls)


def _member_name(url: str, index: int) -> str:
    """`host:port` of a single-host URL (`member-<index>` when it names no TCP host)."""
    try:
        return parse_host_list(url).members[0].name
    except ValueError:
        return f"member-{index}"
