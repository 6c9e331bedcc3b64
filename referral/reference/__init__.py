"""Reference data: the area tree, police units and organisations."""
