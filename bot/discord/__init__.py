"""The Discord edge: the only part of ``bot`` that imports discord.py.

``client`` (the bot and its command tree) · ``run`` (``python -m bot run`` / ``sync-commands``) · ``replies``
(private answers, errors as people read them) · ``delivery`` (the job listener) over ``cards`` (card upkeep),
``render`` (what a card and a delivery say) and ``send`` (the audio, fitted and posted).
"""
