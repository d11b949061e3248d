"""The `turnlog` command line: starts the stack and talks to its REST API."""
