"""The gateway's exception root, as in aiomqtt: one base, errors from below are
translated at the boundary so a user sees what is wrong and what to do."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is wrong.  ``where`` names the file and key path
    (for example ``gateway.toml: routes[1].broker``); the message says what is
    wrong and, where it can, what would be right."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class KeyFileError(GatewayError):
    """The node key file is missing, unreadable, too open, or malformed."""


class OutboxError(GatewayError):
    """The outbox database cannot be opened or used."""


class OutboxFull(GatewayError):
    """The outbox reached its size limit (or the disk is full): nothing was
    stored.  ``ReadingSink.submit`` raises it; the caller keeps its readings
    and retries later."""


class IngestError(GatewayError):
    """A link (UDP port, serial port) cannot be opened at start."""


class MetricsError(GatewayError):
    """The metrics endpoint cannot be served."""
