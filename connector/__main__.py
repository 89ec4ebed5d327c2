"""`python -m connector` runs the same CLI as the `trial-connector` script."""

from connector.cli import main

if __name__ == "__main__":
    main()
