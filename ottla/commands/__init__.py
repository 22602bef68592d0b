"""Administrative subcommands of the `ottla` CLI (topics, ...), over `ottla.client`."""
