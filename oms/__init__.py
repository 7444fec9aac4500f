"""OMS command line, settings and the wiring between the parts."""
