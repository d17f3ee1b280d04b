"""``python -m moeplan``: the same as the ``moeplan`` command."""

from moeplan.cli import main

if __name__ == "__main__":
    main()
