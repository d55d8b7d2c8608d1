"""``python -m gateway.cli``: the ``maas`` command without its console script."""

from gateway.cli.main import main

raise SystemExit(main())
