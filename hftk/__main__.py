"""`python -m hftk` is the `hftk` command."""

from hftk.cli import main

main()
