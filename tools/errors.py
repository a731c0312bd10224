"""The error every ``smemet`` command raises for a user mistake."""


class UserError(Exception):
    """A mistake the user can fix; the message says what is wrong and what to do."""
