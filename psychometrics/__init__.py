"""psytest: measure the personality an LLM presents, with the rigour of a psychometrics lab.

The package is named ``psychometrics``; its command is ``psytest``. Importing the package
is cheap on purpose (the CLI must start instantly): heavy libraries are imported only by the
modules that need them.
"""

__version__ = "0.1.0"
