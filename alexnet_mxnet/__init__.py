"""The book's AlexNet in MXNet (Gluon, NumPy interface).

Its files, read in this order (each imports only those before it): model.py, data.py, step.py,
parallel.py, train.py, predict.py, bench.py.
"""

import os
import socket
import sys

from common.backends import require
from common.launch import cores

require("mxnet")  # one clear line, not a traceback, where the framework is missing or too old

# MXNet's OpenMP pool takes half the cores it sees (it assumes two hyperthreads per core): one thread on a
# 2-core machine, which trained at half speed (docs/results.md). Every core, unless the user or the launcher set it.
os.environ.setdefault("OMP_NUM_THREADS", str(cores()))

if os.environ.get("DMLC_ROLE") == "scheduler":  # `import mxnet` binds its port: name the port if it is taken
    with socket.socket() as _s:
        try:
            _s.bind(("", int(os.environ.get("DMLC_PS_ROOT_PORT", "0"))))
        except (OSError, ValueError) as _e:
            print(f"error: the scheduler cannot listen on DMLC_PS_ROOT_PORT={os.environ.get('DMLC_PS_ROOT_PORT')} "
                  f"({_e.strerror if isinstance(_e, OSError) else 'not a port'}): choose a free port for every "
                  f"process's DMLC_PS_ROOT_PORT", file=sys.stderr)
            raise SystemExit(2) from None
