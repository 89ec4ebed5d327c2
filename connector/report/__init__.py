"""Human- and machine-readable renderings of a ScreenReport."""
