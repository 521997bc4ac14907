"""The dashboard (`bantzd serve`, SPEC section 14): the night on one web page.

A top layer, like cli/: it reads the home through the same code as the CLI and changes it
only through supervisor/control.py. Needs the `web` extra (`pip install 'bantzd[web]'`).
"""
