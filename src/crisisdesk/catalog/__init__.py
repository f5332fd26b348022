"""Components, groups, regions and the history of component status."""
