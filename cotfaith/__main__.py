"""`python -m cotfaith` is the same as the `cotfaith` command."""

from cotfaith.cli import main

main()
