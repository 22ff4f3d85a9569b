"""``python -m eclsr``."""

from eclsr.cli import main

raise SystemExit(main())
