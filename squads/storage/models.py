"""Imports every domain's tables so that ``Base.metadata`` is complete."""

from squads.audit.models import AuditRecord  # noqa: F401
from permissions.tables import GrantRecord  # noqa: F401
from transcripts.models import ConversationRecord, EventRecord  # noqa: F401
from squads.nodes.tables import NodeRecord  # noqa: F401
from squads.accounts.token_models import ApiToken  # noqa: F401
from squads.accounts.models import SignInCounter, User, WebSession  # noqa: F401
