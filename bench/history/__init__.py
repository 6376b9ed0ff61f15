"""The history store: every nightly results file, its raw samples, fingerprint, commit and flags, in a
database (SQLAlchemy Core: a SQLite file by default, PostgreSQL for a fleet sharing one store).

`sources.read_results_file` turns a file into records, `store.open_store` opens (and migrates) a store,
`Store.ingest` writes files in one transaction, and `query` reads runs, results and series back.
"""
