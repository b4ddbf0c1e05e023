"""The Noether's razor model: ``F_theta``, conserved quantities, priors, noise, ``H_hat``."""

from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.models.networks import (
    ACTIVATIONS,
    Activation,
    BayesianMLP,
    get_activation,
    mlp_value_and_input_gradient,
)
from pyro_razor.models.noise import EmpiricalNoise, FixedNoise, OutputNoise, make_noise
from pyro_razor.models.priors import (
    ClosedFormVariancePrior,
    FixedVariancePrior,
    LayerGaussianPrior,
    LearnedVariancePrior,
    make_prior,
)
from pyro_razor.models.quantities import FixedQuantities, LearnedQuantities
from pyro_razor.models.razor import NoetherRazorModel

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "BayesianMLP",
    "ClosedFormVariancePrior",
    "EmpiricalNoise",
    "FixedNoise",
    "FixedQuantities",
    "FixedVariancePrior",
    "LayerGaussianPrior",
    "LearnedQuantities",
    "LearnedVariancePrior",
    "NoetherRazorModel",
    "OutputNoise",
    "SymmetrisedHamiltonian",
    "get_activation",
    "make_noise",
    "make_prior",
    "mlp_value_and_input_gradient",
]
