"""The clinic-side server: UDP reflector and HTTP API (later: media peer, throughput, session hub)."""
