"""``python -m eclsr``."""

from eclsr.cli.main import main

raise SystemExit(main())
