"""Each subcommand's argument parsing, one-line errors and exit codes; nothing else imports this package."""
