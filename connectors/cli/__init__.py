"""The `freshstream` command line: `main` parses and dispatches, one module per verb."""
