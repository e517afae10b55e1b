"""What both ends of the wire share: formats and helpers used by the probes and by the server.

Holds: the UDP probe's wire format (`wire`), a UDP endpoint that hands each datagram over with the
kernel's receive time (`stamped`), bounded HTTP body reads and stream pacing (`httpio`),
the kernel's TCP_INFO byte counts (`tcp_info`), finding a server's reflector and key (`server_info`).
May import: `errors` and the standard library (aiohttp inside functions only). Never `probes`,
`quality`, `server`, `session`, `store` or `cli`.
"""
