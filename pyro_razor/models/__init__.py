"""The Noether's razor model: ``F_theta``, conserved quantities, priors, likelihood, ``H_hat``.

- :mod:`.networks`: ``F_theta`` as a Bayesian MLP whose layer matrices are Pyro sample sites;
- :mod:`.priors`: swappable Gaussian priors over the layer matrices (fixed, learned, D.3);
- :mod:`.quantities`: learnable (``eta``) or fixed conserved quantities and their generators;
- :mod:`.polynomial_quantities`: learnable polynomial quantities with integrated flows;
- :mod:`.hamiltonian`: the symmetrised ``H_hat`` and its vector field;
- :mod:`.flow_hamiltonian`: ``H_hat`` symmetrised over non-linear (polynomial) flows;
- :mod:`.noise`, :mod:`.likelihood`: the Gaussian trajectory likelihood and its output noise;
- :mod:`.razor`: :class:`NoetherRazorModel`, the Pyro program that puts them together.
"""

from pyro_razor.models.flow_hamiltonian import FlowSymmetrisedHamiltonian
from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.models.likelihood import OBSERVATION_SITE, GaussianTransitionLikelihood
from pyro_razor.models.networks import (
    ACTIVATIONS,
    Activation,
    BayesianMLP,
    get_activation,
    mlp_value,
    mlp_value_and_input_gradient,
)
from pyro_razor.models.noise import EmpiricalNoise, FixedNoise, OutputNoise
from pyro_razor.models.polynomial_quantities import PolynomialQuantities
from pyro_razor.models.priors import (
    ClosedFormVariancePrior,
    FixedVariancePrior,
    LayerGaussianPrior,
    LearnedVariancePrior,
)
from pyro_razor.models.quantities import FixedQuantities, LearnedQuantities
from pyro_razor.models.razor import NoetherRazorModel

__all__ = [
    "ACTIVATIONS",
    "OBSERVATION_SITE",
    "Activation",
    "BayesianMLP",
    "ClosedFormVariancePrior",
    "EmpiricalNoise",
    "FixedNoise",
    "FixedQuantities",
    "FixedVariancePrior",
    "FlowSymmetrisedHamiltonian",
    "GaussianTransitionLikelihood",
    "LayerGaussianPrior",
    "LearnedQuantities",
    "LearnedVariancePrior",
    "NoetherRazorModel",
    "OutputNoise",
    "PolynomialQuantities",
    "SymmetrisedHamiltonian",
    "get_activation",
    "mlp_value",
    "mlp_value_and_input_gradient",
]
