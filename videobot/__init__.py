"""videobot core: settings, database, the job queue and the quota ledger.

Shared by ``bot`` (Discord side) and ``generator`` (GPU side). Imports neither
torch, diffusers nor discord.
"""

__version__ = "0.1.0"
