"""quotaledger: prepaid LLM API quota, its balance API, a client and a monitor.

500,000 quota = 1.00 USD, the constant of one-api / new-api relays.
"""

__version__ = "0.1.0"
