"""``python -m tasknb.runner``: a thin alias of :mod:`tasknb.book.runner` (papermill over the notebooks)."""
import sys

from .book.runner import PROFILES, execute, list_notebooks, main, profile_parameters, repo_root

__all__ = ["PROFILES", "repo_root", "list_notebooks", "profile_parameters", "execute", "main"]

if __name__ == "__main__":
    sys.exit(main())
