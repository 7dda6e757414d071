"""Realistic upwatch data for dashboard tests and the dashboard benchmark, generated inside PostgreSQL.

Every table a panel reads gets rows shaped like the services write them:
endpoints of each kind, probe results every `step_s` with phase timings,
status codes, failures with assertion results (made by the prober's own
evaluation code, so they have its shape) and certificates; per-minute
rollups computed from those rows (and the hourly ones from those); pushed services with request logs and their
rollups; detector models, anomalies and incidents; alert state and an outbox of
alerts in every state. Planted facts the tests rely on: `api-001` is DOWN now
(its latest checks fail), `api-002` is ANOMALOUS now, `api-000` had an outage
an hour ago, and one service's name contains a quote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from prober.checks.assertions import Observed, evaluate
from push.rollup import HOURLY_COUNTS, count_hours
from upwatch.conditions import parse

SERVICES = ("shop-api", "o'brien-api", "billing")
ROUTES = ("/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/cart", "/healthz", "/api/v1/login")


@dataclass(frozen=True)
class Scale:
    endpoints: int = 6
    days: float = 3
    step_s: int = 60  # one check per endpoint every step_s
    services: int = 3
    request_every_s: int = 30  # one logged request per service every request_every_s


def endpoint_names(scale: Scale) -> list[str]:
    """The seeded endpoint names, in id order."""
    return [f"api-{i:03d}" for i in range(scale.endpoints)]


# What every seeded http endpoint asserts; the stored results come from the prober's own evaluation.
ASSERTIONS = ("[STATUS] == 200", "[BODY].status == UP",
              {"header": {"name": "Content-Type", "equals": "application/json"}})


def assertion_results(status_code: int, body: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """probe_results.assertions exactly as an http check stores it for this response."""
    observed = Observed(now=now, status_code=status_code, latency_ms=42.0, body=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})
    return [r.to_json() for r in evaluate([parse(a) for a in ASSERTIONS], observed)]


def seed(conn: psycopg.Connection, scale: Scale, now: datetime, *, refresh: bool = True) -> None:
    """Fill every table the dashboards read; `now` anchors all times (and should be the real now)."""
    conn.execute("SELECT setseed(0.42)")
    _endpoints(conn, scale)
    _probe_results(conn, scale, now)
    _probe_rollups(conn)
    _services(conn, scale, now)
    _detector(conn, scale, now)
    _alerts(conn, now)
    if refresh:
        conn.execute("SELECT refresh_hourly_rollups()")  # what upwatch's maintenance job does every few minutes
    conn.execute("ANALYZE")


def _endpoints(conn: psycopg.Connection, scale: Scale) -> None:
    # Mostly https APIs (certificates, TLS phase); every 5th plain http, one tcp; the last one disabled.
    conn.execute(
        """
        INSERT INTO endpoints (name, kind, target, tags, enabled)
        SELECT format('api-%%s', lpad(i::text, 3, '0')),
               CASE WHEN i %% 7 = 6 THEN 'tcp' ELSE 'http' END,
               CASE WHEN i %% 7 = 6 THEN format('db-%%s.internal:5432', i)
                    WHEN i %% 5 = 4 THEN format('http://svc-%%s.internal/healthz', i)
                    ELSE format('https://api-%%s.example.com/health', i) END,
               ARRAY['team-' || (i %% 3)],
               i < %(n)s - 1 OR %(n)s < 3
        FROM generate_series(0, %(n)s - 1) AS i
        ORDER BY i
        """, {"n": scale.endpoints})


def _probe_results(conn: psycopg.Connection, scale: Scale, now: datetime) -> None:
    conn.execute(
        """
        INSERT INTO probe_results (time, endpoint_id, id, location, prober, source, ok, status_code, latency_ms,
                                   dns_ms, connect_ms, tls_ms, ttfb_ms, transfer_ms, response_bytes, final_url,
                                   cert_not_after, error_kind, error, assertions)
        SELECT t, e.id, gen_random_uuid(), 'eu-west', 'prober-1', 'active',
               NOT failed, CASE WHEN timed_out THEN NULL WHEN failed THEN 503 ELSE 200 END,
               CASE WHEN timed_out THEN 10000 ELSE dns + conn + tls + ttfb + xfer END,
               dns, conn, tls, CASE WHEN timed_out THEN NULL ELSE ttfb END,
               CASE WHEN timed_out THEN NULL ELSE xfer END,
               CASE WHEN timed_out THEN NULL ELSE 512 + (noise * 2048)::int END,
               CASE WHEN e.kind = 'http' THEN e.target END,
               CASE WHEN e.target LIKE 'https:%%' AND NOT timed_out
                    THEN %(now)s::timestamptz + make_interval(days => 5 + e.id * 7) END,
               CASE WHEN timed_out THEN 'timeout' WHEN failed THEN 'http_status' END,
               CASE WHEN timed_out THEN 'timeout after 10s' WHEN failed THEN 'status 503 Service Unavailable' END,
               -- a timed-out http check stores no assertion results, nor does a tcp check without assertions
               CASE WHEN e.kind <> 'http' OR timed_out THEN NULL WHEN failed THEN %(failing)s ELSE %(passing)s END
        FROM endpoints e
        CROSS JOIN LATERAL generate_series(%(now)s::timestamptz - make_interval(secs => %(span)s),
                                           %(now)s::timestamptz - make_interval(secs => e.id %% %(step)s),
                                           make_interval(secs => %(step)s)) AS t
        -- referring to t makes the planner draw new numbers for every row instead of once
        CROSS JOIN LATERAL (SELECT random() AS noise, random() AS failure WHERE t IS NOT NULL) r
        CROSS JOIN LATERAL (
            SELECT 1 + r.noise * 4 AS dns, 4 + r.noise * 12 AS conn,
                   CASE WHEN e.target LIKE 'https:%%' THEN 8 + r.noise * 20 ELSE 0 END AS tls,
                   30 + e.id %% 10 * 15 + r.noise * r.noise * 250 AS ttfb, 1 + r.noise * 9 AS xfer,
                   (r.failure < 0.004 AND t < %(now)s::timestamptz - interval '15 minutes')
                   OR (e.name = 'api-001' AND t > %(now)s::timestamptz - interval '3 minutes') AS timed_out,
                   (r.failure < 0.01 AND t < %(now)s::timestamptz - interval '15 minutes')
                   OR (e.name = 'api-001' AND t > %(now)s::timestamptz - interval '3 minutes')
                   OR (e.name = 'api-000' AND t BETWEEN %(now)s::timestamptz - interval '70 minutes'
                                         AND %(now)s::timestamptz - interval '60 minutes') AS failed
        ) m
        WHERE e.enabled OR t < %(now)s::timestamptz - interval '1 day'
        """, {"now": now, "span": scale.days * 86400, "step": scale.step_s,
              "failing": Jsonb(assertion_results(503, {"status": "DOWN", "detail": "db unreachable"}, now)),
              "passing": Jsonb(assertion_results(200, {"status": "UP"}, now))})


def _probe_rollups(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        INSERT INTO probe_rollup_1m (bucket, endpoint_id, location, count, ok_count, avg_latency_ms,
                                     p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms)
        SELECT date_trunc('minute', time), endpoint_id, location, count(*), count(*) FILTER (WHERE ok),
               avg(latency_ms), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms)
        FROM probe_results
        GROUP BY 1, 2, 3
        """)


def _services(conn: psycopg.Connection, scale: Scale, now: datetime) -> None:
    for name in SERVICES[:scale.services]:
        conn.execute("INSERT INTO services (name, description, base_url) VALUES (%s, %s, %s)",
                     (name, f"{name} (seeded)", f"https://{name.replace(chr(39), '')}.example.com"))
    conn.execute(
        """
        INSERT INTO request_logs (time, service_id, method, url, path, route, status_code, latency_ms,
                                  request_headers, error, source_ip, user_id, user_agent)
        SELECT t, s.id, m.method, 'https://example.com' || m.path, m.path, m.route,
               CASE WHEN r.fail < 0.01 THEN NULL WHEN r.fail < 0.03 THEN 503 WHEN r.fail < 0.08 THEN 404
                    WHEN m.method = 'POST' THEN 201 ELSE 200 END,
               CASE WHEN r.fail < 0.01 THEN NULL ELSE 5 + r.noise * r.noise * 400 END,
               '{"authorization": "***", "accept": "application/json"}'::jsonb,
               CASE WHEN r.fail < 0.01 THEN 'upstream timed out' END,
               ('10.0.' || (r.client %% 4) || '.' || (r.client %% 50 + 1))::inet,
               'user-' || (r.client %% 200), 'client/1.0'
        FROM services s
        CROSS JOIN LATERAL generate_series(%(now)s::timestamptz - make_interval(secs => %(span)s),
                                           %(now)s::timestamptz, make_interval(secs => %(every)s)) AS t
        CROSS JOIN LATERAL (SELECT random() AS noise, random() AS fail, (random() * 1000)::int AS client,
                                   floor(random() * 5)::int AS pick WHERE t IS NOT NULL) r
        CROSS JOIN LATERAL (
            SELECT (ARRAY['GET', 'GET', 'POST', 'GET', 'POST'])[r.pick + 1] AS method,
                   (ARRAY['/api/v1/orders', '/api/v1/orders/17', '/api/v1/cart', '/healthz',
                          '/api/v1/login'])[r.pick + 1] AS path,
                   (%(routes)s::text[])[r.pick + 1] AS route
        ) m
        """, {"now": now, "span": scale.days * 86400, "every": scale.request_every_s, "routes": list(ROUTES)})
    conn.execute(
        """
        INSERT INTO request_rollup_1m (bucket, service_id, route, method, count, error_count, avg_latency_ms,
                                       p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms)
        SELECT date_trunc('minute', time), service_id, coalesce(route, ''), coalesce(method, ''), count(*),
               count(*) FILTER (WHERE status_code >= 500 OR error IS NOT NULL), avg(latency_ms),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms)
        FROM request_logs
        GROUP BY 1, 2, 3, 4
        """)
    for table, key in HOURLY_COUNTS:  # requests per hour and client IP / status code, as push.rollup counts them
        conn.execute(count_hours(table, key, "TRUE"))


def _detector(conn: psycopg.Connection, scale: Scale, now: datetime) -> None:
    conn.execute(
        """
        INSERT INTO detector_models (series, endpoint_id, metric, version, trained_at, rows, threshold, watermark,
                                     status)
        SELECT 'endpoint:' || e.name || ':latency', e.id, 'latency_ms', 3, %(now)s::timestamptz - interval '20 minutes',
               5000, 0.62, %(now)s::timestamptz, 'ready'
        FROM endpoints e
        UNION ALL
        SELECT 'service:' || s.name || ':error_rate', NULL::integer, 'error_rate', 2,
               %(now)s::timestamptz - interval '1 hour', 3000, 0.7, %(now)s::timestamptz, 'ready'
        FROM services s
        """, {"now": now})
    _anomalies(conn, scale, now)
    _incidents(conn)


def _anomalies(conn: psycopg.Connection, scale: Scale, now: datetime) -> None:
    # A burst per endpoint every 6 hours, plus api-002 right now and one per service.
    conn.execute(
        """
        INSERT INTO anomalies (time, series, endpoint_id, service_id, value, score, threshold, severity,
                               model_version, features, reason)
        SELECT t, m.series, m.endpoint_id, NULL::integer, 400 + k * 50, least(0.99, 0.63 + k * 0.08), 0.62,
               (ARRAY['medium', 'high', 'critical'])[k + 1], 3, '{"zscore_60": 4.2}'::jsonb,
               format('latency %%s ms vs usual 120±15 ms, TLS phase dominant', 400 + k * 50)
        FROM detector_models m
        CROSS JOIN generate_series(0, floor(%(span)s / 21600)::int - 1) AS b
        CROSS JOIN generate_series(0, 2) AS k
        CROSS JOIN LATERAL (SELECT %(now)s::timestamptz - interval '90 minutes' - make_interval(hours => b * 6)
                                   - make_interval(mins => m.endpoint_id * 7) + make_interval(mins => k) AS t) x
        WHERE m.endpoint_id IS NOT NULL
        UNION ALL
        SELECT %(now)s::timestamptz - make_interval(mins => k), m.series, m.endpoint_id, NULL::integer, 900, 0.9, 0.62,
               'high', 3, NULL, 'latency 900 ms vs usual 120±15 ms'
        FROM detector_models m CROSS JOIN generate_series(1, 3) AS k
        WHERE m.series = 'endpoint:api-002:latency'
        UNION ALL
        SELECT %(now)s::timestamptz - interval '5 hours', m.series, NULL::integer, s.id, 0.12, 0.81, 0.7, 'high', 2,
               NULL, 'error rate 12%% vs usual 1±0.5%%'
        FROM detector_models m JOIN services s ON m.series = 'service:' || s.name || ':error_rate'
        """, {"now": now, "span": scale.days * 86400})


def _incidents(conn: psycopg.Connection) -> None:
    # Consecutive anomalies of a series within an hour make one incident.
    conn.execute(
        """
        WITH i AS (
            INSERT INTO incidents (series, endpoint_id, service_id, started_at, ended_at, peak_score, severity,
                                   reason, points)
            SELECT series, min(endpoint_id), min(service_id), min(time), max(time), max(score),
                   (array_agg(severity ORDER BY score DESC))[1], (array_agg(reason ORDER BY score DESC))[1], count(*)
            FROM anomalies
            GROUP BY series, date_trunc('hour', time)
            RETURNING id, series, started_at, ended_at
        )
        UPDATE anomalies a SET incident_id = i.id
        FROM i
        WHERE a.series = i.series AND a.time BETWEEN i.started_at AND i.ended_at
        """)


def _alerts(conn: psycopg.Connection, now: datetime) -> None:
    conn.execute(
        """
        INSERT INTO alert_state (fingerprint, kind, endpoint_id, status, consecutive_failures, consecutive_successes,
                                 last_result_at, since, last_sent_at, suppressed_count, last_error)
        SELECT e.name || ':down', 'down', e.id, CASE WHEN e.name = 'api-001' THEN 'firing' ELSE 'ok' END,
               CASE WHEN e.name = 'api-001' THEN 12 ELSE 0 END, CASE WHEN e.name = 'api-001' THEN 0 ELSE 40 END,
               %(now)s::timestamptz, %(now)s::timestamptz - interval '3 minutes',
               %(now)s::timestamptz - interval '2 minutes', CASE WHEN e.name = 'api-001' THEN 4 ELSE 0 END,
               CASE WHEN e.name = 'api-001' THEN 'SMTP 451: try again later' END
        FROM endpoints e
        """, {"now": now})
    conn.execute(
        """
        INSERT INTO alerts (fingerprint, kind, event, endpoint_id, severity, channel, recipients, subject, body,
                            state, attempts, last_error, next_attempt_at, created_at, sent_at)
        SELECT e.name || ':' || a.kind, a.kind, a.event, e.id, a.severity, 'email', ARRAY['oncall@example.com'],
               format('[upwatch] %%s %%s %%s', e.name, a.kind, a.event), 'seeded', a.state, a.attempts,
               CASE WHEN a.state = 'failed' THEN 'SMTP 451: try again later' END,
               a.created, a.created, CASE WHEN a.state = 'sent' THEN a.created + interval '2 seconds' END
        FROM endpoints e
        CROSS JOIN LATERAL generate_series(0, 20) AS n
        CROSS JOIN LATERAL (
            SELECT %(now)s::timestamptz - make_interval(hours => n * 7 + e.id) AS created,
                   (ARRAY['down', 'anomaly', 'certificate'])[n %% 3 + 1] AS kind,
                   (ARRAY['firing', 'resolved'])[n %% 2 + 1] AS event,
                   (ARRAY['critical', 'high', 'medium'])[n %% 3 + 1] AS severity,
                   (ARRAY['sent', 'sent', 'suppressed', 'sent', 'failed', 'sent', 'pending'])[n %% 7 + 1] AS state,
                   CASE WHEN n %% 7 = 4 THEN 5 WHEN n %% 7 IN (2, 6) THEN 0 ELSE 1 END AS attempts
        ) a
        """, {"now": now})
