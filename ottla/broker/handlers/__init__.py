"""Request handlers, one module per API family (DESIGN.md section 3)."""
