"""`python -m netcheck …`: the same as the `netcheck` command (the agent starts its A/V probe this way)."""

from netcheck.cli import main

main()
