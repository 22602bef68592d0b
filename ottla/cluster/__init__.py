"""ottla.cluster: see DESIGN.md section 1."""

__all__: list[str] = []
