"""`python -m cypherstream.drainer` is the `drainer` command."""

from cypherstream.drainer.cli import main

main()
