"""Chapter protocols: one module per notebook that needs protocol code, named after it.

``notebooks/part_c/c4_phase_diagrams.md`` runs ``tasknb.chapters.c4_phase_diagrams``, and so on.
A chapter imports kernels (``tasknb.*``) and book tooling (``tasknb.book.plotting``), never
another chapter: protocol code two chapters share moves down into a kernel.
"""
