import logging

import pytest

from upwatch import logs


class Keeper(logging.Handler):
    """A handler an embedding application installed: keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_setup_keeps_the_handlers_others_installed_and_owns_one(capsys: pytest.CaptureFixture[str],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    keeper = Keeper()
    root = logging.getLogger()
    root.addHandler(keeper)
    try:
        logs.setup("INFO")
        logs.setup("INFO")  # again, as `upwatch up` does (the CLI, then the runtime)
        logging.getLogger("upwatch.test").info("probe done target=api ok=true")
    finally:
        root.removeHandler(keeper)
    assert keeper.messages == ["probe done target=api ok=true"]
    assert [r.getMessage() for r in caplog.records] == ["probe done target=api ok=true"]  # pytest's own handler
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith(" INFO upwatch.test probe done target=api ok=true"), lines


def test_setup_again_changes_the_level_of_its_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO")
    logs.setup("WARNING")
    logging.getLogger("upwatch.test").info("hidden")
    logging.getLogger("upwatch.test").warning("shown")
    assert [line.rsplit(" ", 1)[-1] for line in capsys.readouterr().err.splitlines()] == ["shown"]
