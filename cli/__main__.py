"""``python -m abaxus.cli …``: the ``abaxus`` command without the console script."""

from abaxus.cli import app

app(prog_name="abaxus")
