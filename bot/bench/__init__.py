"""``schoolguide bench``: latency, throughput, memory, training cost and baselines, in reports/bench.md.

The numbers live in the report, never in timed tests. Modules: :mod:`.stats` (pure maths), :mod:`.load`
(the aiohttp load client, run as its own process), :mod:`.stack` (the servers, as ``schoolguide run`` does),
:mod:`.parse` (NLU parse timing, its own process), :mod:`.schools` (synthetic clause bases), :mod:`.report`
(markdown and plots) and :mod:`.cli` (the command that runs it all).
"""
