"""Power cuts: SIGKILL the MicroPython VM at many random points while it
stores and ACKs frames, restart it on the same flash, and check the store's
promises.  Seeded, so a failure can be replayed."""

import random
import signal
import subprocess
import time

from fw_testlib import FIRMWARE, MICROPYTHON, SOURCE_HEAP, micropython_env

KILLS = 60
SEED = 20240601


def run_until_killed(flash, seed, delay):
    proc = subprocess.Popen(
        [str(MICROPYTHON), "-X", "heapsize=" + SOURCE_HEAP, str(FIRMWARE / "tests" / "mp" / "powerloss_worker.py"),
         str(seed)], cwd=flash, env=micropython_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    return out.decode(errors="replace").split("\n")[:-1]  # a line cut by the kill is not a claim


def test_power_cuts_lose_nothing_and_repeat_nothing(tmp_path):
    rng = random.Random(SEED)
    stored, acked, taken = set(), set(), []
    in_doubt = set()  # an ACK the cut interrupted: either outcome is allowed
    for run in range(KILLS):
        lines = run_until_killed(tmp_path, rng.randrange(1 << 30), rng.uniform(0.03, 0.35))
        if not lines:  # cut while the VM was still starting (~60 ms, more on a busy machine): nothing claimed
            continue
        assert lines[0].startswith("BOOT"), lines[:5]
        pending = {int(x) for x in lines[0].split()[1:]}
        assert not pending & acked, ("acknowledged frames came back", sorted(pending & acked))
        lost = stored - acked - pending - in_doubt
        assert not lost, ("committed, unacknowledged frames lost", sorted(lost))
        acked |= in_doubt - pending  # those ACKs did land
        acking = set()
        for line in lines[1:]:
            word, _, rest = line.partition(" ")
            if word == "READ":
                assert rest.endswith(" ok"), ("a torn or corrupt frame was read back", line)
            elif word == "TAKE":
                seq = int(rest)
                assert not taken or seq > taken[-1], ("sequence number repeated", seq, taken[-1])
                taken.append(seq)
            elif word == "STORED":
                stored.add(int(rest))
            elif word == "ACKING":
                acking.add(int(rest))
            elif word == "ACKED":
                acked.add(int(rest))
        in_doubt = acking - acked
    assert len(taken) > 200 and len(acked) > 100, (len(taken), len(acked))  # enough cuts landed in real work
