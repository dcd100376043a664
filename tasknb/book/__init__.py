"""Book tooling: what turns the library's results into the rendered book.

``plotting``  the figure theme and the figures several chapters share (learning curves,
              the gain heatmap, the 3-D InPCA view)
``widgets``   sliders over precomputed frames that work with or without a kernel
``runner``    papermill execution of the notebooks under a profile (``python -m tasknb.runner``)
``html``      rendering the executed notebooks into the HTML book (``python -m tasknb.book``)
``output_diff``  what two runs of the book printed, compared notebook by notebook

Nothing here computes a result of the papers: kernels (``tasknb.*``) and chapter protocols
(``tasknb.chapters.*``) do; this layer draws, runs and renders them.
"""
