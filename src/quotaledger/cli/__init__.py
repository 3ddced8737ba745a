"""The `quotaledger` command line: a root group whose subcommands load lazily, so that
`quotaledger balance` never imports the server stack."""
