"""tasknb: the library behind the executable book on the geometry of learning tasks.

Three layers, visible in the folders (``tests/test_layers.py`` checks the import rules):

**Kernels** (``tasknb/*.py``, ``tasknb/networks/``): paper-agnostic, one concept each; they never
import a chapter or the book tooling, and never plot.

==========================  ==============================================================================
``device``                  device choice (CUDA if present, else CPU), seeded generators, one stream per draw
``validation``              the input checks every public function uses
``data``                    Fashion-MNIST and digits loaders (offline), image transforms, block shuffling,
                            class-subset image pools
``tasks``                   task constructors: class subsets, super-classes, relabelings, random labels
``chmm``                    the correlated hidden manifold model, binary and multi-class, and stacked samples
``networks.stacks``         K two-layer networks as stacked tensors (binary and soft-max heads)
``networks.cnn``            the small CNN of the prediction-space chapters
``networks.resnet``         a small ResNet with ResNet-18's module names (conv1, layer1-layer4, fc), GroupNorm
``training``                one training loop for K stacks at once (vmap, Adam, early stopping); L2 heads
``feature_transfer``        reusing a first layer: the TF / RF / 2L / ft-TF learners and their learning curves
``gaussian_equivalence``    Monte-Carlo feature covariances Ω, Φ and the theory of frozen-feature heads
``replica``                 the replica saddle-point solver of the Gaussian covariate model
``separability``            the closed-form separability (interpolation) threshold
``frozen_heads``            L2-logistic heads on frozen features: simulated learning curves, separable training sets
``paired``                  paired differences over realizations: mean, standard error, resolved or not
``readout``                 reading features as class probabilities: imprinting, prototypes (temperature 1 or
                            fitted by maximum likelihood on a support set), probes
``geometry``                prediction space: Bhattacharyya distance, geodesics, progress, trajectories, InPCA,
                            out-of-sample placement, a null for explained stress, symmetric KL
``trajectory_geometry``     runs compared over the progress they share: unfolded progress, re-indexing without
                            extrapolation, common ranges, families of seeds (tubes, normalised distances)
``seed_runs``               the pieces of a run of seeds: one stream per seed and purpose, mini-batch order,
                            SGD (Nesterov) / Adam, constant or cosine learning rate
``trajectories``            training runs recorded as prediction-space trajectories (one run configuration)
``batched_trajectories``    the supervised trainer with all seeds in one vmap (used on CUDA)
``pretraining``             the models of a transfer experiment: a source network pre-trained once and cached on
                            disk, target tasks of increasing distance, training from pre-trained or random weights
``landscape``               comparing trained networks: linear / RBF CKA (biased and debiased), l2 distances
                            per module, loss along interpolations (vmap over lambda), barriers, rewinding,
                            module criticality and its PAC-Bayes bound
``langevin``                overdamped Langevin ensembles (Euler-Maruyama, many particles at once), toy landscapes,
                            first-passage times, Onsager-Machlup action and its static / reachability split,
                            effective potentials, Kramers rate and the exact 1-D mean first-passage time
``fisher``                  per-sample gradients (vmap), true / expected / empirical Fisher of a summed loss,
                            exact spectra through the Gram, matrix-free products, stochastic Lanczos log-dets
``complexity``              Gaussian-posterior complexity C_beta(w0) with a Fisher for the curvature, its
                            structure function over beta, static distances C(a u b) - C(a)
``task_family``             named tasks in one 10-way label space (Fashion-MNIST, inverted, digits,
                            class halves), pooled to size x size, flat, centred; random labels; unions
``convergence``             K small MLPs trained by SGD at once until a training-loss threshold
``task_distances``          a task family measured with trained networks: per-run draws, complexity of each
                            task and union, the static-distance matrix, fine-tuning times between tasks
==========================  ==============================================================================

**Chapters** (``tasknb/chapters/``): the protocol of one notebook each, named after it
(``notebooks/part_c/c4_phase_diagrams.md`` runs ``tasknb.chapters.c4_phase_diagrams``). A chapter
imports kernels and ``tasknb.book.plotting``, never another chapter.

**Book tooling** (``tasknb/book/``): ``plotting`` (theme and shared figures), ``widgets`` (sliders that
work without a kernel), ``runner`` (papermill under a profile; ``python -m tasknb.runner`` is its alias),
``html`` (the Jupyter Book build, ``python -m tasknb.book``), ``output_diff`` (compare the printed
outputs of two runs of the book).
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
