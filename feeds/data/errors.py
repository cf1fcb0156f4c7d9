"""What goes wrong with a data file, said in one line: the error that stops a load, and the tally of bad
records a load skips."""

from __future__ import annotations

from pathlib import Path

# A bad record among a file's first records stops the load (the file is not what it looked like); a bad
# record after them is skipped and counted (a glitch in a long recording).
CHECKED_RECORDS = 20


class DataError(ValueError):
    """A data file that cannot be used. The message, one line, names the file, the line when there is one,
    and the problem."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        self.path, self.line, self.problem = Path(path), line, problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


class BadRecords:
    """The records of one file that did not parse: counted, the first one kept to be named. `seen` is called
    with each bad record's position among the file's records (1-based): within the first CHECKED_RECORDS
    it raises instead."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.first_line = 0
        self.first_problem = ""

    def seen(self, record: int, line: int, problem: str) -> None:
        if record <= CHECKED_RECORDS:
            raise DataError(self.path, line, problem)
        if not self.count:
            self.first_line, self.first_problem = line, problem
        self.count += 1

    def note(self) -> str | None:
        """One line for the operator, None when every record parsed."""
        if not self.count:
            return None
        what = "record" if self.count == 1 else "records"
        return (f"{self.path}:{self.first_line}: {self.count} bad {what} skipped, the first here: "
                f"{self.first_problem}")  # fmt: skip


def excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
