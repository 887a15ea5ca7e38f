"""One spelling of "no DP" in every file privsynth writes (card.json, evaluation JSON, sweep rows):
``"private": false``, and then no epsilon (``null``). Readers decide it through `is_private` only.
A leaf module: run.py, evaluate/ and report/ all read it, and run_folder.py imports report/."""


def is_private(record: dict) -> bool:
    """Whether a card, an evaluation row or a sweep row is of a run with DP. Rows written before
    the field existed said no DP with an epsilon string ("infinity"/"inf")."""
    if "private" in record:
        return bool(record["private"])
    return isinstance(record.get("epsilon"), (int, float))
