"""``python -m mlpred_cli``: the same as the ``mlpred`` command."""

from mlpred_cli.cli import main

main()
