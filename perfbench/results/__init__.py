"""The request record, the run folder's files, the run identity and the history store."""
