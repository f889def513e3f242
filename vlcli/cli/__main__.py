"""`python -m vlcli.cli` runs `vl`."""

from vlcli.cli.app import main

main()
