"""`python -m tests.bench [full|quick|profile]`."""

from __future__ import annotations

import sys

from tests.bench.runner import main

raise SystemExit(main(sys.argv[1:]))
