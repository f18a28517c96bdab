"""The course's one error type for hardware: ``RobotError``, raised when an arm or a camera cannot be used.

Its message says what happened and what to do, in one line; the CLI prints it and exits with code 2.
It lives below ``robot.py`` and ``cameras.py`` so that both can raise it.
"""


class RobotError(RuntimeError):
    """A robot (arm or camera) could not be used; the message says why and what to do."""
