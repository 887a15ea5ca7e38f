"""Orchestration: one run from request to run folder (`trainer`; what it loads first,
`trainer_load`; resume checks, `trainer_resume`; the size release and class counts,
`trainer_plan`; its card, `trainer_card`; the `auto` choice, `trainer_auto`), the same run over
several processes (`distributed`), and many runs over a grid (`sweep`, on Ray with `sweep_ray`).
Nothing here trains or accounts by itself: it calls models/ and privacy/."""
