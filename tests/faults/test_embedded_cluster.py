"""The embedded cluster itself: reuse across runs, running as a normal (non-root) user, its
generated password, and what it changes on the machine.

On the module's own cluster (a second start must leave a running cluster alone; if it did
not, only this module's servers would suffer), and a cluster started and stopped as another
user."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.dev.cluster import SERVER_HOME, SYSTEM_USER, EmbeddedCluster, bin_dir
from tests.support.cluster import TestDatabase, embedded, fetchval
from tests.support.server import free_port

pytestmark = pytest.mark.slow


def test_replica_is_a_streaming_standby_of_the_primary(database: TestDatabase) -> None:
    primary = embedded(database).primary
    streaming = primary.psql(
        "SELECT string_agg(application_name, ',' ORDER BY application_name)"
        " FROM pg_stat_replication WHERE state = 'streaming'"
    )
    assert streaming == "replica-0,replica-1"
    for url in database.replica_urls:
        assert fetchval(url, "SELECT pg_is_in_recovery()") is True


def test_a_second_start_reuses_the_running_cluster(database: TestDatabase) -> None:
    cluster = embedded(database)
    pid_before = (cluster.primary.data_dir / "postmaster.pid").read_text().split()[0]
    again = EmbeddedCluster(cluster.root, replicas=2)
    assert again.is_running()
    again.start()
    assert again.primary_url == cluster.primary_url
    assert again.replica_urls == cluster.replica_urls
    assert (cluster.primary.data_dir / "postmaster.pid").read_text().split()[0] == pid_before


def _reachable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def _start_as(uid: int, gid: int, root: str) -> None:
    """Child process: drop to `uid`, then build and start a cluster with one replica."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    cluster = EmbeddedCluster(Path(root), replicas=1)
    cluster.start()
    assert cluster.replicas[0].psql("SELECT pg_is_in_recovery()") == "t"
    cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to a normal user")
def test_works_as_a_normal_user() -> None:
    if not _reachable_by_others(bin_dir()):
        pytest.skip("the PostgreSQL binaries are not reachable by other users here")
    EmbeddedCluster(Path(tempfile.gettempdir()) / "unused", replicas=0)  # ensures the user
    user = pwd.getpwnam(SYSTEM_USER)
    root = Path(tempfile.mkdtemp(prefix="messenger-nonroot-"))
    os.chown(root, user.pw_uid, user.pw_gid)
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_start_as, args=(user.pw_uid, user.pw_gid, str(root))
        )
        child.start()
        child.join(120)
        assert child.exitcode == 0
        owner = (root / "primary" / "PG_VERSION").stat().st_uid
        assert owner == user.pw_uid
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- passwords, and what the cluster changes on the machine ---------------------------------


def _without_password(url: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    secret = f":{password}" if password else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}{secret}@{host}"))


def _refused(url: str) -> bool:
    async def attempt() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except asyncpg.InvalidPasswordError:
            return True
        await conn.close()
        return False

    return asyncio.run(attempt())


@pytest.fixture
def clean_libpq_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No password from the environment or a ~/.pgpass: only the URL's counts."""
    for name in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.usefixtures("clean_libpq_env")
def test_a_new_cluster_requires_its_generated_password() -> None:
    cluster = EmbeddedCluster(Path(tempfile.mkdtemp(prefix="messenger-pw-")), replicas=1)
    try:
        cluster.start()
        password_file = cluster.root / "password"
        password = password_file.read_text().strip()
        assert len(password) >= 24
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.stat().st_uid == os.geteuid()
        urls = [cluster.primary_url, *cluster.replica_urls, cluster.host_list_url]
        assert all(urlsplit(url).password == password for url in urls), urls
        assert f"DATABASE_URL={cluster.host_list_url}\n" in cluster.env_lines()
        for url in [cluster.primary_url, *cluster.replica_urls]:
            assert _refused(_without_password(url))
            assert _refused(_without_password(url, "not-the-password"))
            rules = fetchval(url, "SELECT array_agg(DISTINCT auth_method) FROM pg_hba_file_rules")
            assert rules == ["scram-sha-256"]
        verifier = fetchval(
            cluster.primary_url, "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'"
        )
        assert verifier.startswith("SCRAM-SHA-256$")
        # Replication authenticates with the password too, from a passfile, never inline.
        assert (
            cluster.primary.psql(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            )
            == "replica-0"
        )
        replica = cluster.replicas[0]
        for name in ("embedded.conf", "postgresql.auto.conf", "postgresql.conf"):
            assert password not in (replica.data_dir / name).read_text()
        passfile = cluster.data_root / "pgpass"
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        if os.geteuid() == 0:
            assert passfile.stat().st_uid == pwd.getpwnam(SYSTEM_USER).pw_uid
    finally:
        cluster.destroy()
    assert not cluster.root.exists()
    assert not cluster.data_root.exists()


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.stat().st_mode) for path in paths}


@pytest.mark.skipif(os.geteuid() != 0, reason="as a normal user nothing is shared")
def test_as_root_no_folder_on_the_way_is_opened_up() -> None:
    private = Path(tempfile.mkdtemp(prefix="messenger-private-"))  # 0700, as a home folder is
    root = private / "checkout" / ".data" / "pg"
    root.mkdir(parents=True)
    watched = [*root.parents, root, *bin_dir().parents]
    before = _modes([path for path in watched if path.exists()])
    cluster = EmbeddedCluster(root, replicas=1)
    try:
        cluster.start()
        assert cluster.replicas[0].psql("SELECT pg_is_in_recovery()") == "t"
        assert _modes(list(before)) == before
        # What the server user owns lives in its own folder, outside the checkout.
        assert SERVER_HOME in cluster.data_root.parents
        assert cluster.primary.data_dir.stat().st_uid == pwd.getpwnam(SYSTEM_USER).pw_uid
    finally:
        cluster.destroy()
        shutil.rmtree(private, ignore_errors=True)


def _legacy_trust_cluster(root: Path) -> int:
    """A primary as the earlier versions left it: initdb --auth=trust, data under `root`,
    running. Returns its port."""
    user = pwd.getpwnam(SYSTEM_USER) if os.geteuid() == 0 else None
    root.mkdir(parents=True, exist_ok=True)
    if user is not None:  # what those versions did: the folders on the way opened (o+x)
        root.parent.chmod(0o711)
        os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run(
            [str(bin_dir() / args[0]), *args[1:]],
            check=True, capture_output=True, timeout=120, cwd=root,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )  # fmt: skip

    data = root / "primary"
    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
        "--no-locale", "--no-instructions")  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\ninclude_if_exists = 'embedded.conf'\n")
    conf_text = (
        f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
        "wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n"
    )
    (data / "embedded.conf").write_text(conf_text)
    if user is not None:
        os.chown(data / "embedded.conf", user.pw_uid, user.pw_gid)
    run("pg_ctl", "start", "-w", "-D", str(data), "-l", str(root / "primary.log"))
    (root / "cluster.json").write_text(
        json.dumps({"ports": {"primary": port}, "primary": "primary"})
    )
    return port


@pytest.mark.usefixtures("clean_libpq_env")
def test_a_trust_cluster_from_before_is_switched_to_a_password() -> None:
    if os.geteuid() == 0 and not _reachable_by_others(bin_dir()):
        pytest.skip("the PostgreSQL binaries are not reachable by the server user here")
    root = Path(tempfile.mkdtemp(prefix="messenger-legacy-")) / "pg"
    port = _legacy_trust_cluster(root)
    no_password = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    assert fetchval(no_password, "SELECT 1") == 1  # trust: anyone local is the superuser
    cluster = EmbeddedCluster(root, replicas=1)
    try:
        cluster.start()
        assert any("password" in notice for notice in cluster.notices), cluster.notices
        password = (root / "password").read_text().strip()
        assert cluster.primary.port == port
        assert cluster.primary.data_dir == root / "primary"  # its data stays where it was
        assert _refused(no_password)
        assert urlsplit(cluster.primary_url).password == password
        assert fetchval(cluster.primary_url, "SELECT count(*) FROM pg_database") >= 3
        assert fetchval(cluster.replica_urls[0], "SELECT pg_is_in_recovery()") is True
        for url in [cluster.primary_url, *cluster.replica_urls]:
            rules = fetchval(url, "SELECT array_agg(DISTINCT auth_method) FROM pg_hba_file_rules")
            assert rules == ["scram-sha-256"]
        again = EmbeddedCluster(root, replicas=1)
        again.start()  # a second start finds nothing left to switch
        assert again.notices == []
        assert again.primary_url == cluster.primary_url
    finally:
        cluster.destroy()
        shutil.rmtree(root.parent, ignore_errors=True)
