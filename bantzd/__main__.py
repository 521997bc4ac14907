"""`python -m bantzd` = the `bantzd` command."""

from bantzd.cli import main

if __name__ == "__main__":
    main()
