"""Import every feature's models so Base.metadata is complete (alembic, tests, create_all)."""

from app.bot import models as _bot  # noqa: F401
from app.grids import models as _grids  # noqa: F401
from app.outbox import models as _outbox  # noqa: F401
from app.partners import models as _partners  # noqa: F401
from app.people import models as _people  # noqa: F401
from app.reports import models as _reports  # noqa: F401
from app.rewards import models as _rewards  # noqa: F401
