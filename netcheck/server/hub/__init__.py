"""The session hub: agents and tabs post a leg's events, watchers follow them (docs/session-hub.md).

Holds: the HTTP side (`routes`: tokens, bodies, the SSE loop, refusals), what a post may carry and
the SSE frames (`events`), the backend interface with the in-memory backend (`backend`), the
Redis Streams backend (`redis_backend`, imported only for `--hub redis://`, with its node reader and
watchers `redis_reader`, watcher leases `redis_leases`, keys and ids `redis_ids`), and the node's
record of every accepted event for reports (`record`).
May import: the root modules, `net`, `session` (the report and the watch view's folding),
`store`, and `server`'s shared parts (`access`, `admission`). Never `server.app` or `server.legs`.
"""
