"""pytest plugin of mcl (fixtures arrive with issue 7)."""
