"""Orchestration: one run from request to run folder (`trainer`, its card and `auto` choice),
the same run over several processes (`distributed`), and many runs over a grid (`sweep`, on Ray
with `sweep_ray`). Nothing here trains or accounts by itself: it calls models/ and privacy/."""
