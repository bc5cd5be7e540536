"""``python -m splitmatch`` (and ``torchrun -m splitmatch``) runs the command line."""

from splitmatch.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
