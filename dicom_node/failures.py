"""What a failed C-STORE of one result means: give that object up now, or try again later.

:func:`classify` is pure: it maps what :func:`dicom_node.scu.send_files` (or the outbox)
saw for one object to a :class:`Verdict`.

- **permanent** — the destination understood us and said no to *this object*; the same
  bytes will be refused again, so the object is failed at once (file kept, reason kept)
  and the results behind it go on:

  * no accepted presentation context for the object's SOP class (PS3.8 §9.3.3.2, the
    A-ASSOCIATE-AC presentation context item: result 3 "abstract-syntax-not-supported" or
    4 "transfer-syntaxes-not-supported"), e.g. a PACS without Encapsulated STL;
  * C-STORE status ``0xCxxx`` "Error: Cannot understand" (PS3.4 B.2.3, Table B.2-1);
  * ``0xA9xx`` "Error: Data Set does not match SOP Class" (PS3.4 B.2.3);
  * PS3.7 Annex C general failures about the object or our rights: ``0x0122`` Refused:
    SOP Class not supported, ``0x0124`` Refused: not authorized, ``0x0110`` Processing
    failure, ``0x0105/0x0106`` no such / invalid attribute, ``0x0117`` invalid object
    instance, ``0x0118`` no such SOP Class, ``0x0119`` class-instance conflict,
    ``0x0211`` unrecognized operation, ``0x0212`` mistyped argument;
  * a result file that cannot be read back.

- **transient** — the destination could not take anything just now; back off and retry
  (bounded by ``send.give_up_after_s``):

  * ``0xA7xx`` "Refused: Out of Resources" (PS3.4 B.2.3: a full PACS) and ``0x0213``
    Resource limitation (PS3.7 Annex C, the general status for the same thing);
  * association rejected-transient (PS3.8 §9.3.4, A-ASSOCIATE-RJ result 2), association aborted, no
    DIMSE response, connection refused, timeouts, any exception while connecting.

- **rejected-permanent association** (PS3.8 §9.3.4 A-ASSOCIATE-RJ result 1: e.g. "called AE title not
  recognised", "calling AE title not recognised") is *not* a verdict on the object: the
  PACS refuses us, not the result, and the fix is a configuration change at either end
  (add our AE at the PACS, correct the destination), after which everything must flow
  without an operator resending each study. It is retried, at the backoff cap straight
  away (``at_cap``), until the deadline — and logged as an error naming the reason.

- Any other failure status is a **refusal** of unknown meaning: retried like a transient
  one, but given up after :data:`MAX_REFUSALS` answers (the PACS did see the object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["permanent", "transient", "refusal"]

#: A destination answering an unrecognised failure status this many times for one object:
#: give up on it (it saw the object; a retry is not going to change its mind).
MAX_REFUSALS = 10

#: What :func:`dicom_node.scu.send_files` reports when the PACS accepted no presentation
#: context for a file's SOP class (and transfer syntax it could be re-encoded to).
NO_CONTEXT = "no presentation context accepted"

#: PS3.7 Annex C general failure statuses that are about the object or our authority.
PERMANENT_STATUSES = frozenset({0x0105, 0x0106, 0x0110, 0x0117, 0x0118, 0x0119, 0x0122, 0x0124,
                                0x0211, 0x0212})
#: PS3.7 Annex C "Resource limitation": the general-status form of "out of resources".
RESOURCE_LIMITATION = 0x0213

#: PS3.8 Table 9-21 (A-ASSOCIATE-RJ): (source, reason) → text.
REJECT_REASONS = {
    (1, 1): "no reason given", (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised", (1, 7): "called AE title not recognised",
    (2, 1): "no reason given", (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion", (3, 2): "local limit exceeded",
}


@dataclass(frozen=True)
class AssociationRejected:
    """An A-ASSOCIATE-RJ (PS3.8 §9.3.4): result 1 permanent / 2 transient, source, reason."""

    result: int
    source: int
    reason: int

    @property
    def permanent(self) -> bool:
        return self.result == 1

    def __str__(self) -> str:
        kind = "permanently" if self.permanent else "transiently"
        why = REJECT_REASONS.get((self.source, self.reason), f"source {self.source} reason {self.reason}")
        return f"association rejected {kind}: {why}"


@dataclass(frozen=True)
class Verdict:
    """How to treat one failed object: ``kind``, a short reason, and whether to back off at the cap."""

    kind: Kind
    reason: str
    at_cap: bool = False


def describe(result: object) -> str:
    """The operator-facing text of a send result (``status 0xA700``, the rejection, the error)."""
    return f"status 0x{result:04X}" if isinstance(result, int) else str(result)


def classify(result: int | str | AssociationRejected) -> Verdict:
    """The verdict on a result that was not a storing status (see the module docstring)."""
    reason = describe(result)
    if isinstance(result, AssociationRejected):
        return Verdict("transient", reason, at_cap=result.permanent)
    if isinstance(result, int):
        if 0xA700 <= result <= 0xA7FF or result == RESOURCE_LIMITATION:
            return Verdict("transient", f"{reason} (out of resources)")
        if 0xC000 <= result <= 0xCFFF:
            return Verdict("permanent", f"{reason} (cannot understand)")
        if 0xA900 <= result <= 0xA9FF:
            return Verdict("permanent", f"{reason} (data set does not match SOP class)")
        if result in PERMANENT_STATUSES:
            return Verdict("permanent", f"{reason} (refused)")
        return Verdict("refusal", reason)
    if result == NO_CONTEXT or result.startswith("unreadable result file"):
        return Verdict("permanent", reason)
    return Verdict("transient", reason)
