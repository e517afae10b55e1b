"""Run netcheck from a checkout without installing it: `python cli.py check --local`."""
from netcheck.cli import main

if __name__ == "__main__":
    main()
