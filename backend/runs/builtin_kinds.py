"""Registers the run kinds that FairDerm ships."""
