"""Test kit shipped with the product: the sandbox (simulators served over real HTTP), the Uppzy
simulator, the fault proxy and the adapter conformance kit. The only package allowed to import
both the engine and the simulators; nothing in production imports it except the CLI's
``sandbox`` and ``demo`` commands."""
