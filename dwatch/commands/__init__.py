"""One module per ``dwatch`` subcommand, each exposing ``command``."""
