"""Example message types used by the sample logs of the project."""
