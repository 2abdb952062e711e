"""The HTTP edge: routes, auth, and translation of domain errors into the contract's JSON shape."""
