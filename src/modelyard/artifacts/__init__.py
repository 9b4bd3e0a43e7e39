"""The artifact store over HTTP: put input files where jobs, schedules and pipelines read them."""
