"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class CotfaithError(Exception):
    """Base class: the message names the file, key or request at fault."""


class ConfigError(CotfaithError):
    pass


class CacheMiss(CotfaithError):
    """Replay mode met a request that the cache does not hold."""
