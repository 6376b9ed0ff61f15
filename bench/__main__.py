"""`python -m bench`: the same command as `bench` (bench.cli.main)."""

import sys

if __name__ == "__main__":
    # Before anything heavy is imported: a Ctrl-C while the modules load is one line and exit 130.
    from bench.cli import install_startup_interrupt_handler, main

    install_startup_interrupt_handler()
    sys.exit(main())
