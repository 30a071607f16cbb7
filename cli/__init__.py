"""The ``floodwatch`` command line: each subcommand in its own module, main.py dispatches."""
