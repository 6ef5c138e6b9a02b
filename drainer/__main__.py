"""`python -m drainer` is the `drainer` command."""

from drainer.cli import main

main()
