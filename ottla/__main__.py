"""`python -m ottla` runs the same command line as the `ottla` console script."""

from ottla.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
