"""The clinic-side server (`netcheck serve`): UDP reflector, media peer, throughput endpoints, the browser check, the session hub."""
