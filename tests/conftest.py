"""Suite-wide set-up."""

import signal

# Tests stop watches and mirrors with Ctrl-C (SIGINT) as a user would. A shell that starts
# the suite in the background without job control has it ignore SIGINT, and every child
# inherits that; a handler here makes children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
