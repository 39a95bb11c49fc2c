"""The `unetflow` command: one subcommand per workflow step, each registered by its stage's module."""
