"""Sinks: they store, nothing else.

Holds: the local SQLite store and its outbox (`local`, `outbox`), the points' schema (`points`), the
InfluxDB writers (`influx`: line protocol, v1 and v2), delivery from the outbox (`delivery`),
keeping a check (`check_record`) and the server's writer thread (`writer`).
May import: the root modules (with `config`) and the standard library. Never `probes`, `quality`,
`session`, `server` or `cli`.
"""
