"""The one error every configuration problem raises."""


class ConfigError(ValueError):
    """A configuration file, key or value is invalid."""
