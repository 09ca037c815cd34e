"""Imports every domain's tables so that ``Base.metadata`` is complete."""

from audit.models import AuditRecord  # noqa: F401
from permissions.models import GrantRecord  # noqa: F401
from transcripts.models import ConversationRecord, EventRecord  # noqa: F401
from nodes.models import NodeRecord  # noqa: F401
from auth.models import ApiToken  # noqa: F401
from users.models import SignInCounter, User, WebSession  # noqa: F401
