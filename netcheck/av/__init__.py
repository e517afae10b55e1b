"""The A/V probe's media side: synthetic marked tracks, their detection, and the analysis of what arrived.

Shared by the client probe (netcheck/probes/av.py) and the server's media peer
(netcheck/server/media.py), so that both directions are measured the same way.
"""
