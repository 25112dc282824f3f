"""Weave Net network policy controller (weave-npc), in Python."""
