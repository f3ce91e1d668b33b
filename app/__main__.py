"""`python -m app`: the command line (app/cli.py), also installed as `messenger`."""

from app.cli import main

raise SystemExit(main())
