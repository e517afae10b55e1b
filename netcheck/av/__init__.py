"""The A/V probe's media side: synthetic marked tracks, their detection, and the analysis of what arrived.

Shared by the client probe (netcheck/probes/av.py) and the server's media peer
(netcheck/server/media.py), so that both directions are measured the same way.

Holds: the marked tracks and the media clock (`tracks`, `markers`), what arrived and its analysis
(`analysis`, `video_windows`, `figures`), the peer connection's settings and statistics (`peer`) and
the offer's format (`session`).
May import: `errors`, the standard library and the media libraries (aiortc, PyAV; `tracks` at module
level, the others inside the functions that need them). Never `probes`, `server` or anything that
judges.
"""
