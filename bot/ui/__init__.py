"""What members see: texts (``text``), the buttons on results and status messages (``buttons``) and
the forms behind them (``forms``).

One home that the commands (``bot.cogs``) and the delivery loop (``bot.delivery``) both use; it imports
neither of them. A click is handed to whoever listens (``buttons.CLICK_EVENT``): the buttons know no cog.
"""
