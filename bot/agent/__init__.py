"""Agent endpoints: the offer-in/answer-out seam (`base`), Millis (`millis`), the aiortc peer setup
(`peer`) and their options (`options`, which loads neither aiortc nor httpx).

Nothing is imported here, so that `bot.settings` can take the agent's defaults from `bot.agent.options`
without loading aiortc.
"""
