"""``make bench``: print every benchmark's figures."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime

from bench import (
    call_logs,
    calls,
    e2e,
    post,
    recordings,
    sip,
    sip_rate,
    webhook_attempt,
    webhooks,
    writer,
)


def main() -> None:
    kinds = sys.argv[1:] or ["sqlite", "postgresql"]
    print(f"# maskline benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}")
    # The bare yardstick runs on PostgreSQL; the table has a row for SQLite too.
    if "postgresql" in kinds:
        print(post.post_table(), flush=True)
    print(recordings.encode_speed(), flush=True)
    print(webhook_attempt.attempt_cpu(), flush=True)
    for kind in kinds:
        print(writer.writer_cost(kind), flush=True)
        print(calls.connect_latency(kind), flush=True)
        for rate in (10.0, 100.0):
            print(sip.sip_connect_latency(kind, calls=200, rate=rate), flush=True)
        print(sip_rate.sip_rate(kind, profile=True), flush=True)
        print(sip.sip_concurrent_media(kind, calls=50), flush=True)
        print(webhooks.webhooks_bench(kind), flush=True)
        print(call_logs.call_logs_latency(kind), flush=True)
        print(e2e.e2e(kind), flush=True)


if __name__ == "__main__":
    main()
