"""The session side: what runs beside a therapy call on a client's or therapist's computer.

Holds: the background agent (`agent`: windows of light probing), the warnings' hysteresis
(`alerts`, `loss_evidence`), the session events a window becomes (`events`), the agent's poster
to the hub (`hub_client`), the therapist's follower of the hub (`watch`) and desktop
notifications (`notify`), and the report after a session (`report`).
May import: the root modules (`model`, `results`, `errors`, `bounds`, `config`, `stats`),
`probes`, `quality`, `store`, `net`. Never `server`, `browser` or `cli` (the server's legs import
`alerts` and `events` from here, not the other way round).
"""
