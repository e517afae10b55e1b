"""The clinic-side server (`netcheck serve`): UDP reflector, media peer, throughput endpoints, the browser check, the session hub.

Holds: `app` (composes the rest, starts and stops it), the reflector and its keys (`reflector`,
`udp_keys`), the one rate limiter (`rate`), who may measure and how much (`access`, `admission`,
`capacity`, and the node's own CPU headroom, `headroom`), the media peer and its voice channel (`media`, `voice_channel`), `throughput`, the
browser check's endpoints (`checks`), the pages (`web`, `session_pages`), TURN credentials for pages
(`turn_credentials`), the node's own metrics (`node_metrics`); the packages `hub` and `legs`.
May import: everything in netcheck but `cli`; only `app` imports `app`.
"""
