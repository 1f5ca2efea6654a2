"""`python -m rnnlm_cli` runs the command-line interface."""

from rnnlm_cli.cli import main

if __name__ == "__main__":
    main()
