"""`python -m lab` is the same command line as `daemonlab`."""

from lab.cli import main

raise SystemExit(main())
