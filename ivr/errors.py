"""Library errors. The CLI turns each into a one-line message; nothing else is caught there."""


class IvrError(Exception):
    """Base of every error the operator can fix; str() is the one-line message."""


class ConfigError(IvrError):
    pass


class SandboxError(IvrError):
    pass


class PromptError(IvrError):
    pass


class ComplianceError(IvrError):
    pass


class ImportFileError(IvrError):
    pass


class StoreError(IvrError):
    pass


class PbxError(IvrError):
    pass
