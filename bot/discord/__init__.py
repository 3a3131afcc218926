"""The Discord edge: the part of ``bot`` that imports discord.py.

``delivery`` (the job listener) over ``cards`` (card upkeep), ``render`` (what a card and a delivery say) and
``send`` (the audio, fitted and posted).
"""
