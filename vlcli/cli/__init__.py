"""The command line: thin adapters that parse options, call the library once and render the result."""
