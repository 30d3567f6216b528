# Targets for images and compose live here (included by the Makefile).
