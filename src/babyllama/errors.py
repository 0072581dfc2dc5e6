"""The one exception type users see: a clear message, never a traceback."""

import difflib


class BabyLlamaError(Exception):
    """An error caused by input or environment, with a message that says what to do."""


def did_you_mean(word, choices) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''. Any value: a YAML file may give a bool or a number."""
    close = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
