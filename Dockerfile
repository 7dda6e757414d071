# One image for the three upwatch daemons; compose starts each with its module:
#   python -m prober | python -m detector | python -m alerter
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid so volume ownership survives image rebuilds.
RUN groupadd --system --gid 10001 upwatch \
 && useradd --system --uid 10001 --gid upwatch --home-dir /var/lib/upwatch --create-home \
            --shell /usr/sbin/nologin upwatch

WORKDIR /src
COPY pyproject.toml README.md ./
COPY upwatch ./upwatch
COPY prober ./prober
COPY push ./push
COPY detector ./detector
COPY alerter ./alerter
COPY upwatch_client ./upwatch_client
# upwatch/sql links to ../sql; the wheel carries the migrations from there.
COPY sql ./sql
RUN pip install . && rm -rf /src

COPY deploy/healthcheck.py /usr/local/lib/upwatch/healthcheck.py
COPY deploy/upwatch.yaml /etc/upwatch/upwatch.yaml

USER upwatch
WORKDIR /var/lib/upwatch
ENV UPWATCH_CONFIG=/etc/upwatch/upwatch.yaml
# Push API, /metrics and /healthz (prober only).
EXPOSE 8080
CMD ["python", "-m", "prober"]
