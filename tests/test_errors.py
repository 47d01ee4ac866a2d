"""lab.errors: the words a refusal is made of."""

from lab.errors import last_line


def test_last_line_is_where_a_failing_tool_says_why():
    said = "Traceback (most recent call last):\n  File ...\nOSError: disk full\n\n"
    assert last_line(said) == "OSError: disk full"


def test_last_line_of_silence_is_the_fallback():
    assert last_line("") == "no output"
    assert last_line(" \n\n", "exit 3") == "exit 3"
