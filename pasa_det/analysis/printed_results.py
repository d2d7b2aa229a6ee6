"""The metrics a detectron2 run prints, read back from its output: `copypaste:` lines are
what a user compares, to the last printed digit."""


def copypaste_results(output: str) -> dict:
    """detectron2's `copypaste:` lines in `output`: {task: {metric: value}} (NaN as None)."""
    lines = [s.split("copypaste: ", 1)[1] for s in output.splitlines() if "copypaste: " in s]
    tasks = [s.split(" ")[1] for s in lines if s.startswith("Task: ")]
    tables = [s for s in lines if not s.startswith("Task: ")]
    values = [[None if v == "nan" else float(v) for v in row.split(",")] for row in tables[1::2]]
    return {task: dict(zip(tables[2 * i].split(","), values[i])) for i, task in enumerate(tasks)}
