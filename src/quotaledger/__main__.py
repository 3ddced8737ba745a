"""`python -m quotaledger` runs the command line."""

from quotaledger.cli.main import main

main()
