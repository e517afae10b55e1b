"""Legs the server measures itself: a session's browser tab, of either role (docs/in-session.md).

Holds: the HTTP routes of a tab (`routes`: the offer, its windows, the echoes), the leg's aiortc
peer (`peer`) and the registry of measured legs with their windows and warnings (`leg`).
May import: the root modules, `browser`, `session` (alerts, events), `av`, `store`, and
`server`'s shared parts (`access`, `admission`, `hub`). Never `server.app`.
"""
