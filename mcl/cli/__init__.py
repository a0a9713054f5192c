"""Command line programs of mcl: one module per command (``add_arguments``, ``main(argv)``, ``run``)."""
