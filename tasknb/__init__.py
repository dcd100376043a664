"""tasknb: the library behind the executable book on the geometry of learning tasks.

Modules, one concept each:

``device``      device choice (CUDA if present, else CPU) and seeding
``validation``  the input checks every public function uses
``data``        Fashion-MNIST and digits loaders (offline), image transforms
``tasks``       task constructors: class subsets, super-classes, relabelings, random labels
``chmm``        the correlated hidden manifold model (Gerace et al. 2022, sec. 2.1)
``learners``    two-layer nets trained many-at-once, logistic heads, TF / RF / 2L / ft-TF
``replica``     the replica saddle-point solver (Gaussian covariate model, logistic / ridge)
``plotting``    the figure theme
``widgets``     sliders over precomputed frames that work with or without a kernel
``runner``      papermill execution of the notebooks under a profile
``book``        rendering the executed notebooks into the HTML book
"""
from .device import get_device, seed_everything
from .geometry import bhattacharyya_matrix, geodesic, progress, riemann_length, inpca

__version__ = "0.1.0"
__all__ = [
    "get_device",
    "seed_everything",
    "bhattacharyya_matrix",
    "geodesic",
    "progress",
    "riemann_length",
    "inpca",
    "__version__",
]
