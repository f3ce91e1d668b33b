"""`python -m app`: the command line behind the justfile (see app/cli.py)."""

from app.cli import main

raise SystemExit(main())
