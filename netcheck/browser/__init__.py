"""What the server reads from its pages: the browser check's body and report, the session tab's reports.

Holds: `check_body` (the declarative schema that validates `POST /v1/checks` and the tab's
bodies: types, ranges, units), `check_report` (a browser check's figures and the server's own
records → probe results, the assessment, the device findings, the check code) and `tab` (a session
tab's offer and window reports → a leg's probe results).
May import: the root modules, `probes` (their result builders and statistics), `quality`. Pure:
no sockets, no files, no aiohttp — the server's routes hand these modules bytes and records.
"""
