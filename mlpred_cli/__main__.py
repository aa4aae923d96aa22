"""``python -m mlpred_cli``: the same as the ``mlpred`` command."""

from mlpred_cli.console_script import main

main()
