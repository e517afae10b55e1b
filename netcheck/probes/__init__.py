"""Probes measure and return a result; they never judge, store or print.

Each probe module defines one probe class behind the `Probe` protocol (base.py); its result type
lives in netcheck/results.py. Callers construct the probes they need explicitly (check.py,
agent.py, the CLI's `probe` commands): there is no registry to scan.

Holds: `base` (the protocol, timing a run), `udp`, `av` (and `av_subprocess`, the agent's way to run
it), `throughput` (and the one ramp), `reach` (and its STUN/TURN parts, `reach_ice`), `system`, and
the speedtest.net backend (`speedtest_backend`, `speedtest_child`: a program of its own).
May import: the root modules but `config` and `check`, `net`, `av`. Never `quality`, `store`,
`session`, `browser`, `server` or `cli`.
"""
