"""``python -m attngraph ...`` runs the command line (the same as the ``attngraph`` command)."""
from attngraph_cli.main import main

if __name__ == "__main__":
    main()
