"""Probes measure and return a result; they never judge, store or print.

Each probe module defines one probe class behind the `Probe` protocol (base.py); its result type
lives in netcheck/results.py. Callers construct the probes they need explicitly (check.py,
agent.py, the CLI's `probe` commands): there is no registry to scan.
"""
