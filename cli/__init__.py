"""The ``attngraph`` command-line application (installed as the ``attngraph_cli`` package)."""
