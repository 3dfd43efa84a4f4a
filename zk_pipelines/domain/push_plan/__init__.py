"""The push of a Zomentum document to Kaseya, decided without I/O.

The orchestration layer (`push/`) reads (the id map, Kaseya's lookups and existing records), calls these
functions, and sends the `PlannedRequest`s they return; `zk push --dry-run` renders the same requests instead.
So a dry run shows exactly what a real push sends. One module per part:

- `requests`: the requests a push sends, and the placeholders (`PendingId`) for ids created by the same push;
- `markers`: the markers that make a push happen exactly once;
- `overrides`: `zk push --set field=value` and the push job's config;
- `wire`: Kaseya's records read in any key case, and values written as Kaseya takes them;
- `bodies`: the opportunity's and the quote's bodies (create or full replace);
- `quote_lines`: the quote's lines, matched with those it has, retired when no longer in the document;
- `catalogue`: the products and services the lines refer to; `accounts`: accounts and contacts it creates;
- `resolutions`: how Zomentum's values became Kaseya ids and statuses;
- `readback`: what Kaseya reads back, compared with what was sent;
- `plan` and `dry_run`: the plan of a push and its rendering.
"""
