"""``python -m spansignals`` is an alias of the ``spansignals`` command."""

from spansignals.cli import main

raise SystemExit(main())
