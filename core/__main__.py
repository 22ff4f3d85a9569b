"""``python -m eclsr``."""

try:
    from eclsr.cli.main import console_main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still being imported
    import sys

    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(console_main())
