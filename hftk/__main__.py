"""`python -m hftk` is the `hftk` command."""

from hftk.console import main

main()
