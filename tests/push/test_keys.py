"""Services and keys: stored as hashes, checked in constant time, managed from the CLI."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from push import keys
from push.cli import register


async def test_key_is_stored_only_as_sha256_and_prefix(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await keys.create_service(conn, "shop")
        raw, row = await keys.create_key(conn, "shop", "ci")
        cur = await conn.execute("SELECT prefix, key_hash, name FROM api_keys")
        (prefix, key_hash, name), = await cur.fetchall()
    assert raw.startswith("uwk_") and len(raw) >= 40
    assert prefix == raw[:12] == row["prefix"] and name == "ci"
    assert bytes(key_hash) == hashlib.sha256(raw.encode()).digest()
    assert raw not in str(row)


async def test_keystore_accepts_good_key_and_refuses_wrong_unknown_and_revoked(pool: AsyncConnectionPool) -> None:
    store = keys.KeyStore(pool)
    async with pool.connection() as conn:
        await keys.create_service(conn, "shop", privacy_level=1)
        raw, _ = await keys.create_key(conn, "shop")
    caller = await store.authenticate(raw)
    assert caller is not None and caller.service == "shop" and caller.privacy_level == 1
    assert await store.authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None  # same prefix, wrong secret
    assert await store.authenticate("uwk_nothing-like-this-exists") is None
    assert await store.authenticate(None) is None and await store.authenticate("Bearer x") is None
    async with pool.connection() as conn:
        await keys.revoke_key(conn, raw[:12])
    store.forget(raw[:12])
    assert await store.authenticate(raw) is None


async def test_last_used_at_is_written_in_batches(pool: AsyncConnectionPool) -> None:
    store = keys.KeyStore(pool)
    async with pool.connection() as conn:
        await keys.create_service(conn, "shop")
        raw, row = await keys.create_key(conn, "shop")
    assert row["last_used_at"] is None
    for _ in range(3):
        assert await store.authenticate(raw) is not None
    assert await store.flush_usage() == 1
    assert await store.flush_usage() == 0
    async with pool.connection() as conn:
        (used,), = await (await conn.execute("SELECT last_used_at FROM api_keys")).fetchall()
    assert used is not None


async def test_duplicate_service_and_unknown_names_are_push_errors(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await keys.create_service(conn, "shop")
        with pytest.raises(keys.PushError, match="already exists"):
            await keys.create_service(conn, "shop")
        with pytest.raises(keys.PushError, match="no service named 'nope'"):
            await keys.create_key(conn, "nope")
        with pytest.raises(keys.PushError, match="no active key"):
            await keys.revoke_key(conn, "uwk_missing1")


def run_cli(config_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["-c", str(config_path), *argv])
    return int(args.handler(args))


def test_cli_manages_services_and_keys(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "upwatch.yaml"
    cfg.write_text(f"storage:\n  database_url: {database_url}\n")
    assert run_cli(cfg, "service", "create", "shop", "--base-url", "http://127.0.0.1:9", "--privacy-level", "1") == 0
    assert "created service shop" in capsys.readouterr().out
    assert run_cli(cfg, "service", "create", "shop") == 1
    assert "service 'shop' already exists" in capsys.readouterr().err
    assert run_cli(cfg, "key", "create", "shop", "--name", "ci") == 0
    out = capsys.readouterr()
    raw = out.out.strip()
    assert raw.startswith("uwk_") and "not shown again" in out.err
    assert run_cli(cfg, "service", "list") == 0
    listing = capsys.readouterr().out
    assert "shop" in listing and "http://127.0.0.1:9" in listing
    assert run_cli(cfg, "key", "list", "shop") == 0
    keys_out = capsys.readouterr().out
    assert raw[:12] in keys_out and raw not in keys_out and "ci" in keys_out
    assert run_cli(cfg, "key", "revoke", raw[:12]) == 0
    assert run_cli(cfg, "key", "revoke", raw[:12]) == 1
    capsys.readouterr()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO request_logs (time, service_id) SELECT now(), id FROM services")
    assert run_cli(cfg, "service", "delete", "shop") == 1
    assert "use --purge" in capsys.readouterr().err
    assert run_cli(cfg, "service", "delete", "shop", "--purge") == 0
    assert "1 keys, 1 logs" in capsys.readouterr().out
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM services").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_cli_sets_and_checks_replay_settings(database_url: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "upwatch.yaml"
    cfg.write_text(f"storage:\n  database_url: {database_url}\n")
    assert run_cli(cfg, "service", "create", "shop", "--allowed-host", "shop.internal:8443",
                   "--replay-method", "post", "--replay-method", "DELETE") == 0
    assert run_cli(cfg, "service", "create", "bad", "--allowed-host", "shop.internal/path") == 1
    assert "replay allow-list: 'shop.internal/path' is not host[:port]" in capsys.readouterr().err
    assert run_cli(cfg, "service", "create", "bad", "--replay-method", "GET /x") == 1
    assert "replay method 'GET /x'" in capsys.readouterr().err
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name, allowed_hosts, replay_methods FROM services").fetchall()
    assert rows == [("shop", ["shop.internal:8443"], ["DELETE", "POST"])]
