"""``python -m tasknb.book``: render the executed notebooks into the HTML book (see :mod:`tasknb.book.html`)."""
import sys

from .html import main

sys.exit(main())
