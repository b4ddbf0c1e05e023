"""pyro-razor: Noether's razor in Pyro.

Learn the conserved quantities of a Hamiltonian system, and with them its symmetry group,
by variational Bayesian model selection (van der Ouderaa, van der Wilk & de Haan, NeurIPS 2024).
"""

__version__ = "0.1.0"

# Importing the distributions registers the closed-form KLs used by TraceMeanField_ELBO.
from pyro_razor import distributions as _distributions  # noqa: E402,F401
from pyro_razor.discovery.api import discover  # noqa: E402

__all__ = ["discover"]
