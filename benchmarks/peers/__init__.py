"""voicestate-redis beside the libraries a user would pick instead on the same Redis.

``nox -s bench_peers`` (its own environment, the peers pinned there) runs
``python benchmarks/peers/run.py``: in one run, on one private Redis server, the
floors (PING, raw redis-py, raw redis.asyncio), voicestate on voicestate-redis, OpenAI
Agents' ``RedisSession``, LangChain community's ``RedisChatMessageHistory`` and
LangGraph on ``langgraph-checkpoint-plainredis``, at 20, 200 and 1,000 turns, with the
method of shared/notes/peer-baseline.md. One module per peer; ``common`` drives them.
"""
