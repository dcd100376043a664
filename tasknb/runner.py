"""``python -m tasknb.runner``: the command line of :mod:`tasknb.book.runner`, kept under its old name.

This file is only a launcher: run as a script it hands the command line to the book tooling's
runner; imported, it does nothing and exports nothing (import :mod:`tasknb.book.runner` instead),
so the kernel layer does not depend on the book tooling.
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("tasknb.book.runner", run_name="__main__", alter_sys=True)
