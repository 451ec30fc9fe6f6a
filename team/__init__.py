"""A team's stack on one machine, for trying the shared set-up and for the `team` tests.

`python -m team up` (or `make team-up`) starts, on loopback and under `.team/`: PostgreSQL,
a SeaweedFS S3 store, the MLflow tracking + registry server (PostgreSQL rows, S3 artifacts,
basic-auth accounts) and the Prefect server (PostgreSQL, basic auth) with the work pool, the
training concurrency limit and the nightly deployment; the DVC remote goes in
`.dvc/config.local`. `python -m team down` stops what it started. See docs/team.md.

Nothing in pipeline/ or flows/ imports this package: the pipeline only sees the standard
environment variables written to `.team/env`.
"""
