"""What the controller and the agent both say: output markers, operation names, takeover waits.

The controller imports this module (upgrader/agent/__init__.py, engine/rollback.py) and the agent is
built from it (upgrader/agent/build.py), so each constant has one definition.  Standard library only,
like every module of the agent.
"""

# One line of the agent's output per operation: MARKER and the result as JSON.  Each program's output
# ends with END and the program's exit status (0, or 1 after a failed operation).
MARKER = "@@upgrader "
END = "@@upgrader-end "

# The whole command line of a serving agent but for the source's digest; the rest comes on stdin.
# The agent recognises another agent by it too (program_lock.is_agent_holding) before killing one.
LOADER = "import sys,base64;exec(base64.b64decode(sys.stdin.readline()))"

# The operations a program may name, in the order a run uses them.
OPERATIONS = (
    "facts",
    "lock",
    "stage",
    "precheck",
    "stop",
    "switch",
    "carry_over",
    "migrate",
    "start",
    "verify",
    "bake",
    "rollback",
    "prune",
    "unstage",
)
READ_ONLY = ("facts",)  # never journaled on the host, and run without the program lock

# Seconds a takeover (an emergency rollback, apply --break-lock) gives the program in flight on a host to
# end its current operation before it is killed; the controller sends it, the agent caps what it is sent.
TAKEOVER_WAIT = 30.0
MAX_TAKEOVER_WAIT = 3600.0
