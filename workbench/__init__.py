"""NAS Workbench: the Textual app, the CLI, the SQLite store and the run engine.

Kept import-light: nothing here imports torch or textual at package import time.
"""

__version__ = "0.1.0"
