"""``python -m psychometrics`` runs the ``psytest`` command."""

from psychometrics.cli import main

if __name__ == "__main__":
    main()
