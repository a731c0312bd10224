# Runs first on a board (the unix port skips it).  Kept minimal on purpose:
# a mistake here cannot be repaired remotely.  Boot counting and safe mode
# live in node/bootguard.py, called by main.py.
