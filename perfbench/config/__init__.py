"""The option table and its readers: flags, scenario keys and Python keywords become one RunConfig."""
