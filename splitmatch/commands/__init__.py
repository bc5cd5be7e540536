"""The ``splitmatch`` command line's subcommands, one module per family: each holds the parsers of
its commands (``add_<name>_command``) beside their handlers (``cmd_<name>``).

``training`` (train, seeds, folds), ``pseudo_masks``, ``evaluation`` (eval), ``prediction``
(predict, app, package-model), ``export``, ``data`` (prepare, convert-clip) and ``world`` (world,
toy-clip, demo, presets); ``arguments`` holds what their parsers share and ``common`` what their
handlers share. The error handling and the order of the commands are in :mod:`splitmatch.cli`.
Each handler takes the parsed arguments and returns the exit code; the library is imported
inside the handlers, so that ``splitmatch --help`` does not wait for torch.
"""
