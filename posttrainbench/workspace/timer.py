"""timer.sh: the agent's clock. It is written when the agent starts (the original baked the start time in at
job preparation, so queueing ate into the budget) and is mounted read-only."""

from pathlib import Path

TIMER = """#!/bin/bash
# Prints the time left for this run.
DEADLINE={deadline}
NOW=$(date +%s)
LEFT=$((DEADLINE - NOW))
if [ "$LEFT" -le 0 ]; then
  echo "Timer expired!"
else
  printf 'Remaining time (hours:minutes): %d:%02d\\n' $((LEFT / 3600)) $(((LEFT % 3600) / 60))
fi
"""


def write_timer(path: Path, deadline_epoch: float) -> None:
    path.write_text(TIMER.format(deadline=int(deadline_epoch)))
    path.chmod(0o555)
