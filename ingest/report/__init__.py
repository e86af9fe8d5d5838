"""Look at a published dataset: `ingest report PATH` (a static HTML report) and `ingest view PATH --episode N`
(a rerun recording). Read-only: they read the contract's files (`meta/`, `data/`, `videos/`) and write only
under their `--out`."""
