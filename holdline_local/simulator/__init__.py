"""A simulated Amazon Connect call: an interpreter of the shipped flow (flows/transfer-flow.json).

* :mod:`~holdline_local.simulator.rules`: the static rules (Connect's and Holdline's) a flow must keep before
  a call runs; :func:`check_flow`.
* :mod:`~holdline_local.simulator.interpreter`: :class:`SimulatedCall`, the actions the shipped flow uses and
  Connect's run-time rules (timeouts, retries, answer validation, the chain limit, asynchronous invocations,
  the Wait block, "Load Lambda result").
* :mod:`~holdline_local.simulator.report` and :mod:`~holdline_local.simulator.terminal`: what a call reports,
  and its timeline as ``holdline simulate`` prints it.

What Connect does not document, and the reading the simulator follows (the flow is built to be right under
either reading; `make bench` measures the outcome's latency under both):

1. **Does the "Lambda returned" event cut a prompt that is playing in the Continue branch?** The admin guide
   says "Keep running while waiting" routes the contact down the Continue branch *temporarily* while the block
   waits, and suggests playing audio there until the Lambda completes; a console export (DanBloy/blog-ecr,
   AsyncExecution.json) plays a long music prompt in the Continue branch and then disconnects, which only
   works if the event interrupts it. Reading: the event (and the time limit) ends the Continue branch at once,
   mid-prompt. The safe consequence Holdline draws from it: the Continue branch can be abandoned at any point,
   so it may only play prompts (no attribute, no invocation: :data:`rules.CONTINUE_BRANCH_TYPES`), and nothing
   after the Wait depends on how far it got. ``SimulatedCall(prompt_plays_out=True)`` runs the other reading:
   the event is taken when the prompt ends (the caller waits out the prompt, as with the polling loop).
2. **What if the Continue branch ends before the event?** Reading: the contact stays in the Wait, in silence,
   until the event or the time limit (it does not leave the Wait). The safe consequence: a Continue branch must
   not be able to end; :func:`check_flow` refuses one that could (it must loop on prompts).
3. **An asynchronous invocation that times out** (Connect's 60 s): Connect stops waiting and nothing returns,
   so no "Lambda returned" event: the Wait runs to its time limit (hence the rule that a Wait's limit is no
   shorter than the invocation's), and "Load Lambda result" takes NoMatchingError. **One that fails** (an
   exception after Connect's retries, a refused or invalid answer) has returned: the event fires and "Load
   Lambda result" takes NoMatchingError. An invocation Lambda refuses outright takes the block's Error branch.
4. **``$.External`` after an asynchronous invoke**: cleared (not to be relied on) until "Load Lambda result".
5. **The ~20 s chain limit**: an asynchronous invocation adds no silence (the flow moves on at once), so it
   neither starts nor ends a chain of synchronous invocations.

The flow built on these readings, and why each fallback goes to the polling loop: README, "The Connect flow".
"""

from holdline_local.simulator.interpreter import InvocationRefused, Invoker, SimulatedCall, speaking_seconds
from holdline_local.simulator.report import CallReport, Step, invoked_functions
from holdline_local.simulator.rules import FlowRuleViolation, check_flow
from holdline_local.simulator.terminal import format_step

__all__ = [
    "CallReport",
    "FlowRuleViolation",
    "InvocationRefused",
    "Invoker",
    "SimulatedCall",
    "Step",
    "check_flow",
    "format_step",
    "invoked_functions",
    "speaking_seconds",
]
