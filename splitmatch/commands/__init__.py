"""The handlers of the ``splitmatch`` command line's subcommands, one module per concept.

The parser and the error handling are in :mod:`splitmatch.cli`. Each handler takes the parsed
arguments and returns the exit code; the library is imported inside the handlers, so that
``splitmatch --help`` does not wait for torch.
"""
