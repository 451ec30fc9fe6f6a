"""The one error the stack raises: what failed and where its log is; `python -m team` prints
it as one line (plus the log's tail) and exits 1."""


class StackError(RuntimeError):
    pass
