"""Discovery of the conserved quantities of a user's system: readable laws and their Lie algebra."""
