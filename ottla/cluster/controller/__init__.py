"""The controller: pure rules turning admin requests into metadata records."""
