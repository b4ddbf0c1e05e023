"""Variational families for the model's weights."""

from pyro_razor.guides.matrix_normal import MatrixNormalGuide

__all__ = ["MatrixNormalGuide"]
