"""The offline demo: a procedurally rendered catalog and the runner behind `make demo`."""
